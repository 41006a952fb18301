"""Evaluation: caption metrics against references, and scene-grounded object_f1 for the synthetic demo data."""
