"""Server fixtures: a tiny ClipCap and a tiny Show-Attend-Tell model directory, an app over both, test images; a
tiny ClipCap whose CLIP can rerank."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from serve_helpers import make_client

import captionkit
from captionkit.config import from_dict
from captionkit.models.model_dir import save_model_dir
from captionkit.registry import get_model_class, get_preset

CAPTIONS = [
    "a red circle above a blue square .",
    "two green stars on a white background .",
    "a blue square and a red circle .",
    "one yellow cross .",
] * 3


@pytest.fixture(scope="session")
def sat_model_dir(tmp_path_factory) -> Path:
    """The tiny-show-attend-tell preset (random weights, small VGG from pixels, attention over a 7x7 grid)."""
    preset = get_preset("tiny-show-attend-tell")
    cls = get_model_class(preset["model"]["type"])
    config = from_dict(cls.config_class, {k: v for k, v in preset["model"].items() if k != "type"})
    tokenizer = cls.build_tokenizer(config, CAPTIONS)
    torch.manual_seed(0)
    model = cls.build(cls.config_for_tokenizer(config, tokenizer))
    return save_model_dir(tmp_path_factory.mktemp("sat") / "model", model, tokenizer, preset["encoder"])


@pytest.fixture(scope="session")
def captioners(tiny_model_dir, sat_model_dir):
    """Both models loaded once; min_new_tokens keeps a random model from answering with an empty caption."""
    return {
        "clipcap": captionkit.load(str(tiny_model_dir), device="cpu", max_new_tokens=6, min_new_tokens=3),
        "sat": captionkit.load(str(sat_model_dir), device="cpu", max_new_tokens=6, min_new_tokens=3),
    }


@pytest.fixture()
def client(captioners):
    with make_client(captioners) as c:
        assert c.app.state.pool.wait(60)
        yield c


@pytest.fixture(scope="session")
def rerank_captioners(clip_dir, captioners, tmp_path_factory):
    """A tiny ClipCap whose encoder is the saved CLIP with its text tower (it reranks with its own CLIP), and the
    VGG-family Show-Attend-Tell model (it needs a CLIP named)."""
    from captionkit.models.base import build_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = build_model_and_tokenizer(get_preset("tiny-clipcap-mlp")["model"], CAPTIONS)
    model_dir = save_model_dir(
        tmp_path_factory.mktemp("clipcap-rerank") / "model", model, tokenizer, f"clip:{clip_dir}"
    )
    return {
        "clipcap": captionkit.load(str(model_dir), device="cpu", max_new_tokens=6, min_new_tokens=3),
        "sat": captioners["sat"],
    }
