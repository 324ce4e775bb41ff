"""Widgets that only display what they are given."""
