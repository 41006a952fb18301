"""Fixtures for the VGG tests: ../shared/fixtures/vgg16 and a VGG16 carrying its deterministic weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from captionkit.models.vgg import VGG16


def sin_ramp(n: int, offset: float, step: float = 0.7853, width: int = 4096) -> torch.Tensor:
    """sin(arange(n, float64) * step + offset) as float32, by angle addition over a (n / width, width) grid with
    float64 angles and float32 products: float64 sin of VGG16's 138M weights takes 5-15 s on this CPU. Values differ
    from the direct formula by a few float32 ulps; the fixture's tolerances are 1e-4 relative."""
    rows = torch.arange(-(-n // width), dtype=torch.float64) * (width * step) + offset  # (R,) row start angles
    cols = torch.arange(width, dtype=torch.float64) * step  # (W,)
    out = torch.sin(rows).float()[:, None] * torch.cos(cols).float()  # (R, W)
    out.addcmul_(torch.cos(rows).float()[:, None], torch.sin(cols).float())
    return out.flatten()[:n]


def readme_weights(keys: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    """The fixture README's weights: i-th key of shape s with n elements -> sin(arange(n) * 0.7853 + i), scaled."""
    state = {}
    for i, (key, shape) in enumerate(keys):
        n = math.prod(shape)
        base = sin_ramp(n, float(i)).view(shape)
        state[key] = base * 2 / math.sqrt(n / shape[0]) if key.endswith("weight") else base * 0.01
    return state


@pytest.fixture(scope="session")
def vgg_fixture_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "vgg16"


@pytest.fixture(scope="session")
def torchvision_keys(vgg_fixture_dir: Path) -> list[tuple[str, list[int]]]:
    return [(k, s) for k, s in json.loads((vgg_fixture_dir / "state_dict_keys.json").read_text())["keys"]]


@pytest.fixture(scope="session")
def expected(vgg_fixture_dir: Path) -> dict:
    return torch.load(vgg_fixture_dir / "expected.pt", weights_only=True)


@pytest.fixture(scope="session")
def fixture_state(torchvision_keys) -> dict[str, torch.Tensor]:
    return readme_weights(torchvision_keys)


@pytest.fixture(scope="session")
def fixture_net(fixture_state) -> VGG16:
    with torch.device("meta"):  # shapes only; the weights come from the state dict
        net = VGG16()
    net.load_state_dict(fixture_state, strict=True, assign=True)  # torchvision's keys load strictly
    return net.eval()
