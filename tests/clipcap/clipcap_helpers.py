"""Helpers of the ClipCap tests: tiny configs and the reference fixtures' architectures."""

from __future__ import annotations

from pathlib import Path

from captionkit.models.clipcap import ClipCapConfig


def tiny_config(mapping: str = "mlp", **overrides) -> ClipCapConfig:
    """A ClipCap small enough to run many times per test: packaged 2-layer GPT-2 (E=64, V=1024), 16-d features."""
    base = dict(
        mapping=mapping,
        prefix_length=3,
        clip_dim=16,
        clip_length=2,
        num_layers=2,
        gpt2="captionkit:tiny-gpt2",
        tokenizer="train-bpe",
    )
    return ClipCapConfig(**{**base, **overrides})


def reference_config(root: Path, spec: dict) -> ClipCapConfig:
    """The architecture a fixture model was built with, as `captionkit import clipcap` flags would state it."""
    c = spec["constructor"]
    return ClipCapConfig(
        mapping=c["mapping"],
        prefix_length=c["prefix_length"],
        clip_dim=c["prefix_size"],
        clip_length=c["clip_length"] or 10,
        num_layers=c["num_layers"],
        gpt2=str(root / spec["gpt2_config_file"]),
    )
