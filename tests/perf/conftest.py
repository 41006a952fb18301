"""Fixtures of tests/perf: a tiny ClipCap model directory (random weights, the tiny CLIP encoder)."""

from pathlib import Path

import pytest
from perf_helpers import build_tiny

from captionkit.models.model_dir import save_model_dir


@pytest.fixture(scope="session")
def clipcap_dir(tmp_path_factory) -> Path:
    model, tokenizer, encoder = build_tiny("tiny-clipcap-mlp")
    return save_model_dir(tmp_path_factory.mktemp("perf") / "model", model, tokenizer, encoder)


@pytest.fixture(scope="session")
def image_paths(flickr8k_fixture: Path) -> list[Path]:
    return sorted((flickr8k_fixture / "Images").glob("*.jpg"))[:4]
