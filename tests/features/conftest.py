"""Fixtures for the feature-cache tests: a tiny counting encoder and six real JPEG files in tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captionkit.data.records import Record
from feature_helpers import CountingEncoder, write_images


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run best on one intra-op thread; two OpenMP threads on a busy 2-core machine spin and make small
    convolutions (the CLI tests' vgg16-small) over 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def encoder() -> CountingEncoder:
    return CountingEncoder()


@pytest.fixture
def records(tmp_path: Path) -> list[Record]:
    """Six images, five captions each."""
    return [Record(p.name, p, tuple(f"caption {k} of {p.stem}" for k in range(5)), "train")
            for p in write_images(tmp_path / "images", 6)]
