"""Fixtures for the data-layer tests: the real Flickr8k files read once, and small datasets written in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from data_helpers import SMALL_CAPTIONS, SMALL_SPLITS, token_lines, write_jpeg

from captionkit.data.formats import ReadResult, read_dataset


@pytest.fixture(scope="session")
def fixture_token(flickr8k_fixture: Path) -> ReadResult:
    """The real Flickr8k token file + official splits, read once."""
    return read_dataset(flickr8k_fixture)


@pytest.fixture(scope="session")
def fixture_kaggle(flickr8k_fixture: Path) -> ReadResult:
    """The real Kaggle captions.txt (official splits from Text/ beside it), read once."""
    return read_dataset(flickr8k_fixture / "captions.txt", format="kaggle")


@pytest.fixture
def flickr_layout(tmp_path: Path) -> Callable[..., Path]:
    """Write a small Flickr8k-layout dataset (Text/ + Images/) and return its root."""

    def make(
        captions: dict[str, list[str]] = SMALL_CAPTIONS,
        splits: dict[str, list[str]] | None = SMALL_SPLITS,
        images: list[str] | None = None,
        text_dir: str = "Text",
        image_dir: str = "Images",
        extra_lines: list[str] = (),
        newline: str = "\n",
    ) -> Path:
        root = tmp_path / "Flickr8k"
        text = root / text_dir if text_dir else root
        text.mkdir(parents=True, exist_ok=True)
        lines = token_lines(captions) + list(extra_lines)
        (text / "Flickr8k.token.txt").write_bytes((newline.join(lines) + newline).encode("utf-8"))
        for split, ids in (splits or {}).items():
            name = {"train": "train", "dev": "dev", "test": "test"}[split]
            (text / f"Flickr_8k.{name}Images.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
        for i, name in enumerate(list(captions) if images is None else images):
            write_jpeg(root / image_dir / name, colour=(40 * i % 256, 90, 160))
        return root

    return make
