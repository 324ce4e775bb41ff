"""Synthetic test data: 300-VW style clips and occluded faces with exact ground truth."""
