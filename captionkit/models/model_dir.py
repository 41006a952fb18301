"""Self-describing model directories: config.json + model.safetensors + tokenizer files, one loader."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from captionkit.config import to_dict
from captionkit.errors import ModelDirError
from captionkit.models.base import CaptionModel, TextTokenizer, build_model
from captionkit.models.encoders import absolute_spec, relative_spec

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class LoadedModel:
    model: CaptionModel
    tokenizer: TextTokenizer
    encoder: str | None  # encoder spec, e.g. "clip:openai/clip-vit-base-patch32"
    config: dict[str, Any]  # the whole config.json
    directory: Path


def model_config_data(model: CaptionModel) -> dict[str, Any]:
    """`{"type": ..., **architecture}`: what `build_model` takes back."""
    return {"type": model.model_type, **to_dict(model.config)}


def save_model_dir(
    directory: str | Path,
    model: CaptionModel,
    tokenizer: TextTokenizer,
    encoder: str | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model directory atomically: built in a temporary sibling, then renamed into place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        config = {
            "model_type": model.model_type,
            "model": model_config_data(model),
            "encoder": relative_spec(encoder, directory),  # a moved run directory keeps working
            "tokenizer_type": tokenizer.tokenizer_type,
            **(extra or {}),
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_model(model, str(tmp / WEIGHTS_NAME))  # handles tied weights (GPT-2 lm_head == wte)
        tokenizer.save_pretrained(str(tmp))
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_model_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise ModelDirError(
            f"{directory}: not a directory; expected a captionkit model directory "
            f"({CONFIG_NAME} + {WEIGHTS_NAME} + tokenizer files)"
        )
    if not path.is_file():
        raise ModelDirError(
            f"{path}: missing; {directory} is not a captionkit model directory "
            "(a training run keeps its model in RUN_DIR/model)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("model_type", "model", "tokenizer_type"):
        if key not in config:
            raise ModelDirError(f"{path}: field {key!r} missing; was this written by captionkit?")
    return config


def load_model_dir(directory: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the architecture from config.json (no downloads), load weights and tokenizer."""
    from captionkit.registry import get_tokenizer_class

    directory = Path(directory)
    config = read_model_config(directory)
    model = build_model(config["model"], pretrained=False)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelDirError(f"{weights}: missing; the model directory is incomplete")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except RuntimeError as exc:  # shape mismatches
        raise ModelDirError(f"{weights}: does not match the architecture in {CONFIG_NAME}: {exc}") from exc
    if missing or unexpected:
        raise ModelDirError(
            f"{weights}: does not match the architecture in {CONFIG_NAME}: "
            f"missing keys {sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}"
        )
    tokenizer = get_tokenizer_class(config["tokenizer_type"]).from_pretrained(str(directory))
    model.to(device).eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        encoder=absolute_spec(config.get("encoder"), directory),
        config=config,
        directory=directory,
    )
