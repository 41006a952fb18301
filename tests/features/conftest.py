"""Fixtures for the feature-cache tests: a tiny counting encoder and six real JPEG files in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from feature_helpers import CountingEncoder, write_images

from captionkit.data.records import Record


@pytest.fixture
def encoder() -> CountingEncoder:
    return CountingEncoder()


@pytest.fixture
def records(tmp_path: Path) -> list[Record]:
    """Six images, five captions each."""
    return [
        Record(p.name, p, tuple(f"caption {k} of {p.stem}" for k in range(5)), "train")
        for p in write_images(tmp_path / "images", 6)
    ]
