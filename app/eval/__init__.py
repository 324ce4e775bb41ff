"""Evaluation: accuracy on stills, occluded faces, 300-VW style clips, head pose and blinks; reports and plots."""
