"""A labelled stream of demo scenes for pretraining image encoders: the demo's analogue of ImageNet.

Image i of stream `seed` is drawn by the caption dataset's own scene sampler and renderer (`synthetic.py`) from
generators seeded with (STREAM_TAG, seed, i, ...), a seed space the caption dataset never uses (its generators are
seeded with (seed, i, stream)), so the stream never repeats the caption dataset's pictures. The stream is as long
as the step count needs: nothing is written to disk, and image i is the same on every run and in every process.

Each image carries text labels naming what is in it at three levels of detail (ImageNet names one object; these
scenes hold up to five, so the labels are multi-label), and its background, in groups a pretraining run picks:
  "red", "circle"             colour, shape: a colour / a shape is present
  "red circle"                kind: a (colour, shape) kind is present
  "red circle x2"             count: that kind occurs exactly twice
  "white background"          background: the background's colour (not an object: the captions name it, so an
                              encoder that is to caption these scenes must see it)
and where each object is: `scene_coverage` gives, per cell of a grid laid over the image, how much of the cell each
colour and each shape covers (the demo's analogue of detection boxes).
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
from PIL import Image

from captionkit.data.scene_grammar import BACKGROUNDS, COLOURS, SHAPES, kind_counts
from captionkit.data.synthetic import DEFAULT_SIZE, JPEG_QUALITY, object_mask, render_scene, sample_scene

STREAM_TAG = 1_000_003  # first entropy word of every stream generator; caption datasets start with their seed
MAX_COUNT = 3  # sample_scene draws 1-3 objects of a kind
OBJECT_GROUPS = ("colour", "shape", "kind", "count")  # a run's groups unless it names others (the demo's stages 1-4)
LABEL_GROUPS = (*OBJECT_GROUPS, "background")
COVERAGE_CHANNELS = (*COLOURS, *SHAPES)  # scene_coverage's channel order


def _labels_of(groups: tuple[str, ...]) -> list[tuple[str, str]]:
    """(label, its group) for every label of `groups`, in the classifier's output order."""
    kinds = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    by_group = {
        "colour": list(COLOURS),
        "shape": list(SHAPES),
        "kind": kinds,
        "count": [f"{k} x{n}" for k in kinds for n in range(1, MAX_COUNT + 1)],
        "background": [f"{b} background" for b in BACKGROUNDS],
    }
    return [(name, group) for group in LABEL_GROUPS if group in groups for name in by_group[group]]


def scene_label_names(groups: tuple[str, ...] = OBJECT_GROUPS) -> list[str]:
    """Every label of `groups` the stream can emit, in a fixed order (the classifier's output order)."""
    return [name for name, _ in _labels_of(groups)]


def scene_label_groups(groups: tuple[str, ...] = OBJECT_GROUPS) -> list[str]:
    """The group of each label of `scene_label_names(groups)`. A classifier averages its loss per group, so the 5
    shape labels weigh as much as the 90 count labels (with a plain mean over all 131 object labels, the demo's VGG
    learnt colours and stayed at the majority rate on shapes for 1,500 steps)."""
    return [group for _, group in _labels_of(groups)]


def scene_labels(scene: dict[str, Any]) -> list[str]:
    """The text labels of one scene, of every group (see the module docstring)."""
    counts = kind_counts(scene)
    labels = sorted({c for c, _ in counts} | {s for _, s in counts})
    for (colour, shape), n in sorted(counts.items()):
        labels += [f"{colour} {shape}", f"{colour} {shape} x{n}"]
    return [*labels, f"{scene['background']['colour']} background"]


def scene_coverage(scene: dict[str, Any], size: int, crop: int, grid: int) -> np.ndarray:
    """(len(COVERAGE_CHANNELS), grid, grid) float32: how much of each cell each colour and each shape covers, the
    image resized to size x size, centre-cropped to crop x crop (as ImageNet preprocessing does) and cut into
    grid x grid cells (crop a multiple of grid)."""
    if crop % grid or crop > size:
        raise ValueError(f"a {grid}x{grid} grid over a {crop} px crop of {size} px: need crop <= size, grid | crop")
    top, step = int(round((size - crop) / 2.0)), crop // grid
    cells = np.zeros((len(COVERAGE_CHANNELS), grid, grid), np.float32)
    for obj in scene["objects"]:
        mask = object_mask(obj, size)[top : top + crop, top : top + crop]
        covered = mask.reshape(grid, step, grid, step).mean(axis=(1, 3))
        for channel in (COVERAGE_CHANNELS.index(obj["colour"]), COVERAGE_CHANNELS.index(obj["shape"])):
            np.maximum(cells[channel], covered, out=cells[channel])  # objects never overlap (one per scene cell)
    return cells


class SceneStream:
    """Map-style dataset of `length` labelled scenes: `stream[i]` -> (RGB image, labels).

    Rendered and JPEG-compressed exactly like the caption dataset's files (same size, quality and chroma), so an
    encoder pretrained here sees the same kind of pixels it will caption.
    """

    def __init__(self, seed: int = 0, length: int = 10**9, size: int = DEFAULT_SIZE) -> None:
        self.seed, self.length, self.size = seed, length, size

    def __len__(self) -> int:
        return self.length

    @functools.lru_cache(maxsize=1)  # noqa: B019 (one stream per process) a training item asks twice: pixels, coverage
    def scene(self, index: int) -> dict[str, Any]:
        """Image `index`'s scene (its objects and their positions; see scene_grammar)."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        return sample_scene(np.random.default_rng([STREAM_TAG, self.seed, index, 0]))

    def __getitem__(self, index: int) -> tuple[Image.Image, list[str]]:
        scene = self.scene(index)
        image = render_scene(scene, np.random.default_rng([STREAM_TAG, self.seed, index, 1]), self.size)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB"), scene_labels(scene)
