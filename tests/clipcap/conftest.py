"""Fixtures of the ClipCap tests: tiny configs and the reference checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def clipcap_reference(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "clipcap_reference"


@pytest.fixture(scope="session")
def reference_inputs(clipcap_reference: Path) -> dict[str, torch.Tensor]:
    return torch.load(clipcap_reference / "inputs.pt", weights_only=True)


@pytest.fixture(scope="session")
def reference_variants(clipcap_reference: Path) -> dict:
    return json.loads((clipcap_reference / "expected.json").read_text(encoding="utf-8"))["variants"]


@pytest.fixture(scope="session")
def flickr_captions(flickr8k_fixture: Path) -> list[str]:
    lines = (flickr8k_fixture / "Text" / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines[:200]]
