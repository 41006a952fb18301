"""Starting a run from another model directory's weights (fine-tuning, self-critical training after cross-entropy):
its architecture and encoder fill the run config, its tokenizer is kept, and weights that do not fit are refused
with the differing keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_model

from captionkit.config import merge
from captionkit.errors import ConfigError, ModelDirError
from captionkit.models.base import CaptionModel, TextTokenizer
from captionkit.models.encoders import absolute_spec
from captionkit.models.model_dir import WEIGHTS_NAME, read_model_config

SHOWN = 5  # differing keys named per kind in an error message


def with_init_model(data: dict[str, Any]) -> dict[str, Any]:
    """Run config data with `model` and `encoder` taken from the `init_from` model directory, the run's own
    settings laid over them (a preset may name only the model type and, say, the mapping it expects)."""
    directory = Path(data["init_from"])
    if not directory.exists() and "model" in data and "encoder" in data:
        return data  # a resolved config being resumed: it already holds the architecture
    source = read_model_config(directory)
    given = data.get("model", {})
    wanted = given.get("type") if isinstance(given, dict) else None
    if wanted is not None and wanted != source["model"]["type"]:
        raise ConfigError(
            f"model.type={wanted!r} but init_from {directory} holds a {source['model']['type']!r} "
            "model; start from a model of that type or use settings for its type"
        )
    encoder = absolute_spec(source.get("encoder"), directory)  # stored relative to the model directory
    return merge({"model": source["model"], "encoder": encoder}, data)


def init_tokenizer(directory: str | Path) -> TextTokenizer:
    """The tokenizer saved in the model directory: the run keeps the vocabulary its weights were trained with."""
    from captionkit.registry import get_tokenizer_class

    config = read_model_config(directory)
    return get_tokenizer_class(config["tokenizer_type"]).from_pretrained(str(directory))


def load_init_weights(model: CaptionModel, directory: str | Path) -> None:
    """Copy the directory's weights into `model`; every parameter and buffer must be there with the same shape
    (tied weights, e.g. GPT-2's lm_head and wte, are stored once and count as present)."""
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelDirError(f"{weights}: missing; init_from must be a captionkit model directory (RUN_DIR/model)")
    with safe_open(str(weights), framework="pt") as f:
        stored = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    own = model.state_dict()
    pointers: dict[int, set[str]] = {}
    for key, tensor in own.items():
        pointers.setdefault(tensor.data_ptr(), set()).add(key)
    missing = sorted(k for k, t in own.items() if k not in stored and not (pointers[t.data_ptr()] & stored.keys()))
    unexpected = sorted(k for k in stored if k not in own)
    shapes = sorted(
        f"{k} {stored[k]} vs {tuple(own[k].shape)}" for k in stored if k in own and stored[k] != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [
            f"{what} {len(keys)}: {', '.join(keys[:SHOWN])}{' ...' if len(keys) > SHOWN else ''}"
            for what, keys in (
                ("missing in the directory", missing),
                ("not in the model", unexpected),
                ("shape (directory vs model)", shapes),
            )
            if keys
        ]
        raise ModelDirError(
            f"init_from {directory}: its weights do not fit the configured {model.model_type} "
            f"model (same architecture needed); {'; '.join(parts)}"
        )
    with torch.no_grad():
        load_model(model, str(weights), strict=False, device=str(next(model.parameters()).device))
