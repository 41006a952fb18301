"""A labelled stream of demo scenes for pretraining image encoders: the demo's analogue of ImageNet.

Image i of stream `seed` is drawn by the caption dataset's own scene sampler and renderer (`synthetic.py`) from
generators seeded with (STREAM_TAG, seed, i, ...), a seed space the caption dataset never uses (its generators are
seeded with (seed, i, stream)), so the stream never repeats the caption dataset's pictures. The stream is as long
as the step count needs: nothing is written to disk, and image i is the same on every run and in every process.

Each image carries text labels naming what is in it at three levels of detail (ImageNet names one object; these
scenes hold up to five, so the labels are multi-label):
  "red", "circle"             a colour / a shape is present
  "red circle"                a (colour, shape) kind is present
  "red circle x2"             that kind occurs exactly twice
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from captionkit.data.scene_grammar import COLOURS, SHAPES, kind_counts
from captionkit.data.synthetic import DEFAULT_SIZE, JPEG_QUALITY, render_scene, sample_scene

STREAM_TAG = 1_000_003  # first entropy word of every stream generator; caption datasets start with their seed
MAX_COUNT = 3  # sample_scene draws 1-3 objects of a kind


def scene_label_names() -> list[str]:
    """Every label the stream can emit, in a fixed order (the classifier's output order)."""
    kinds = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    return [*COLOURS, *SHAPES, *kinds, *(f"{k} x{n}" for k in kinds for n in range(1, MAX_COUNT + 1))]


def scene_label_groups() -> list[str]:
    """The level of each label of `scene_label_names()`: colour, shape, kind or count. A classifier averages its
    loss per level, so the 5 shape labels weigh as much as the 90 count labels (with a plain mean over all 131, the
    demo's VGG learnt colours and stayed at the majority rate on shapes for 1,500 steps)."""
    kinds = len(COLOURS) * len(SHAPES)
    return ["colour"] * len(COLOURS) + ["shape"] * len(SHAPES) + ["kind"] * kinds + ["count"] * kinds * MAX_COUNT


def scene_labels(scene: dict[str, Any]) -> list[str]:
    """The text labels of one scene (see the module docstring)."""
    counts = kind_counts(scene)
    labels = sorted({c for c, _ in counts} | {s for _, s in counts})
    for (colour, shape), n in sorted(counts.items()):
        labels += [f"{colour} {shape}", f"{colour} {shape} x{n}"]
    return labels


class SceneStream:
    """Map-style dataset of `length` labelled scenes: `stream[i]` -> (RGB image, labels).

    Rendered and JPEG-compressed exactly like the caption dataset's files (same size, quality and chroma), so an
    encoder pretrained here sees the same kind of pixels it will caption.
    """

    def __init__(self, seed: int = 0, length: int = 10**9, size: int = DEFAULT_SIZE) -> None:
        self.seed, self.length, self.size = seed, length, size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Image.Image, list[str]]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        scene = sample_scene(np.random.default_rng([STREAM_TAG, self.seed, index, 0]))
        image = render_scene(scene, np.random.default_rng([STREAM_TAG, self.seed, index, 1]), self.size)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB"), scene_labels(scene)
