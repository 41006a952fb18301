"""Helpers of tests/perf: tiny models built from the tiny presets."""

import torch

from captionkit.config import from_dict
from captionkit.registry import get_model_class, get_preset

CAPTIONS = ["a red circle and a blue square .", "two green stars .", "one yellow cross ."] * 3


def build_tiny(preset_name: str):
    """(model, tokenizer, encoder spec) of a tiny preset, seeded."""
    preset = get_preset(preset_name)
    cls = get_model_class(preset["model"]["type"])
    config = from_dict(cls.config_class, {k: v for k, v in preset["model"].items() if k != "type"})
    tokenizer = cls.build_tokenizer(config, CAPTIONS)
    if hasattr(cls, "config_for_tokenizer"):
        config = cls.config_for_tokenizer(config, tokenizer)
    torch.manual_seed(0)
    return cls.build(config).eval(), tokenizer, preset["encoder"]
