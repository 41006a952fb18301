"""Labelled images for pretraining an image encoder as a classifier (the ImageNet step of a captioner).

Three sources, one interface (`source[i] -> (RGB image, [label, ...])`, `len(source)`, `source.label_names`):
  synth:SEED               the demo's labelled scene stream (data/scene_stream.py): endless, multi-label; the
                           option groups= picks its label groups (default colour,shape,kind,count; also
                           background), and it alone knows where its objects are (`coverage`)
  DIR/CLASS/IMAGE.jpg      a folder of class subfolders (torchvision's ImageFolder layout): one label per image
  FILE.csv / FILE.jsonl    a table of image + labels: in CSV the labels column joins labels with `separator`
                           ("red;circle"), in JSONL it may also be a list; image paths are relative to the file
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from captionkit.data.images import IMAGE_SUFFIXES, load_image
from captionkit.errors import ConfigError, DatasetError

STREAM_PREFIX = "synth:"


class LabelledImages(Protocol):
    label_names: list[str]
    label_groups: list[str] | None  # a group per label (the loss is averaged per group), or None: one group
    endless: bool  # a generated stream (image i is new for every i) rather than a set of files to shuffle

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Image.Image, list[str]]: ...


@dataclass
class LabelledFiles:
    """Image files with their labels (from a folder tree or a table)."""

    paths: list[Path]
    labels: list[list[str]]
    label_names: list[str]
    label_groups: list[str] | None = None
    endless: bool = False

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, list[str]]:
        return load_image(self.paths[index]), self.labels[index]


class _Stream:
    def __init__(self, seed: int, groups: tuple[str, ...]) -> None:
        from captionkit.data.scene_stream import SceneStream, scene_label_groups, scene_label_names

        self.stream = SceneStream(seed=seed)
        self.label_names = scene_label_names(groups)
        self.label_groups: list[str] | None = scene_label_groups(groups)
        self.endless = True

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, index: int) -> tuple[Image.Image, list[str]]:
        return self.stream[index]

    def coverage(self, index: int, size: int, crop: int, grid: int) -> np.ndarray:
        """Where image `index`'s colours and shapes are: see scene_stream.scene_coverage."""
        from captionkit.data.scene_stream import scene_coverage

        return scene_coverage(self.stream.scene(index), size, crop, grid)


def load_labelled(
    source: str, image_column: str = "image", labels_column: str = "labels", separator: str = ";", groups: str = ""
) -> LabelledImages:
    """Open a labelled source (see the module docstring); errors name the file, line and field."""
    if source.startswith(STREAM_PREFIX):
        seed = source[len(STREAM_PREFIX) :] or "0"
        if not seed.isdigit():
            raise DatasetError(f"{source!r}: the scene stream is named synth:SEED with a seed >= 0, e.g. synth:1")
        return _Stream(int(seed), _stream_groups(groups))
    if groups:
        raise ConfigError(f"groups={groups!r}: only the scene stream (synth:SEED) has label groups to choose")
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_folder(path)
    if path.suffix.lower() in (".csv", ".tsv", ".jsonl"):
        if not path.is_file():
            raise DatasetError(f"{path}: labelled image table not found")
        return _from_table(path, image_column, labels_column, separator)
    raise DatasetError(
        f"{source}: not a labelled image source; give synth:SEED, a folder of class subfolders, "
        "or a .csv/.tsv/.jsonl table with image and labels columns"
    )


def _stream_groups(groups: str) -> tuple[str, ...]:
    from captionkit.data.scene_stream import LABEL_GROUPS, OBJECT_GROUPS

    chosen = tuple(g.strip() for g in groups.split(",") if g.strip()) or OBJECT_GROUPS
    unknown = [g for g in chosen if g not in LABEL_GROUPS]
    if unknown:
        raise ConfigError(
            f"groups={groups!r}: the scene stream has no group {unknown[0]!r}; choose from {', '.join(LABEL_GROUPS)}"
        )
    return chosen


def _from_folder(root: Path) -> LabelledFiles:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for name in classes:
        for file in sorted((root / name).rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(file)
                labels.append([name])
    if not paths:
        raise DatasetError(f"{root}: no images in class subfolders (expected {root}/CLASS/IMAGE.jpg)")
    return LabelledFiles(paths, labels, classes)


def _from_table(path: Path, image_column: str, labels_column: str, separator: str) -> LabelledFiles:
    rows = _read_rows(path)
    paths, labels = [], []
    for line, row in rows:
        where = f"{path}:{line}"
        if image_column not in row or labels_column not in row:
            raise DatasetError(
                f"{where}: needs the fields {image_column!r} and {labels_column!r} (found "
                f"{sorted(row)}); set image_column=/labels_column= to the names this file uses"
            )
        raw = row[labels_column]
        names = raw if isinstance(raw, list) else [s for s in str(raw).split(separator)]
        names = [str(n).strip() for n in names if str(n).strip()]
        if not names:
            raise DatasetError(f"{where}: field {labels_column!r} holds no label")
        paths.append((path.parent / str(row[image_column])).resolve())
        labels.append(names)
    if not paths:
        raise DatasetError(f"{path}: no rows")
    return LabelledFiles(paths, labels, sorted({n for ls in labels for n in ls}))


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        rows = []
        for line, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{line}: expected a JSON object per line")
            rows.append((line, row))
        return rows
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return [(i + 2, row) for i, row in enumerate(csv.DictReader(text.splitlines(), delimiter=delimiter))]
