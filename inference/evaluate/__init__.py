"""Scoring a submission against labels, and drawing candidates over a tomogram."""
