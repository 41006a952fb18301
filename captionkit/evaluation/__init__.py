"""Evaluation: caption metrics against references, and scene-grounded object_f1 for the synthetic demo data.

May import inference (to caption a split), data, decoding, models and the foundation; never training, report or
the applications. Needs the `eval` extra (pycocoevalcap)."""
