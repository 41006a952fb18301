"""Helpers for the data-layer tests: small caption datasets and images written in tmp_path."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

SMALL_CAPTIONS = {
    "a.jpg": ["A dog runs on the grass .", "A brown dog running .", "Dog in a field"],
    "b.jpg": ["Two children play football , laughing .", "Kids kicking a ball ."],
    "c.jpg": ['A man rides a "red" bike .', "Cyclist # 5 on a road ."],
    "d.jpg": ["A cat sleeps .", "A cat on a sofa ."],
}
SMALL_SPLITS = {"train": ["a.jpg", "b.jpg"], "dev": ["c.jpg"], "test": ["d.jpg"]}


def write_jpeg(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def token_lines(captions: dict[str, list[str]]) -> list[str]:
    return [f"{image}#{n}\t{caption}" for image, caps in captions.items() for n, caption in enumerate(caps)]
