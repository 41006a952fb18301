"""Helpers for tests/features: a tiny encoder that counts what it encodes, and small real JPEG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from captionkit.models.encoders import ImageEncoder


class CountingEncoder(ImageEncoder):
    """(3, 8, 8) pixels -> (4,) features; counts the images its forward has encoded."""

    def __init__(self, spec: str = "tiny:test") -> None:
        super().__init__()
        self.spec = spec
        self.feature_shape = (4,)
        with torch.random.fork_rng():  # the same weights in every instance, global RNG untouched
            torch.manual_seed(0)
            self.proj = nn.Linear(3 * 8 * 8, 4)
        self.images_encoded = 0

    def preprocess(self, image: Image.Image) -> Tensor:
        pixels = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()

    def forward(self, pixel_values: Tensor) -> Tensor:
        self.images_encoded += pixel_values.shape[0]
        return self.proj(pixel_values.flatten(1))


def write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths
