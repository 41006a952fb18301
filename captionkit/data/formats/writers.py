"""Writers: any dataset -> Karpathy split JSON, and -> COCO references JSON for evaluation."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from captionkit.data.records import CaptionDataset, Record
from captionkit.errors import DatasetError
from captionkit.models.tokenizers import word_tokenize

KARPATHY_SPLITS = {"train": "train", "dev": "val", "test": "test", None: None}


def _records(dataset: CaptionDataset | Iterable[Record], split: str | None = None) -> list[Record]:
    if isinstance(dataset, CaptionDataset):
        return dataset.split(split) if split is not None else list(dataset.records)
    records = list(dataset)
    if split is not None:
        split = "dev" if split == "val" else split
        records = [r for r in records if r.split == split]
    return records


def _coco_id(image_id: str) -> int | str:
    """COCO ids are integers; an id that is a canonical integer string is written as one, others stay strings."""
    return int(image_id) if image_id.isdigit() and str(int(image_id)) == image_id else image_id


def _write_json(path: Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # never leave a half-written file where a reader expects a whole one
    return path


def _relative_dir(directory: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(directory, start)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return directory.absolute().as_posix()


def write_karpathy(
    dataset: CaptionDataset | Iterable[Record], path: str | Path, *, dataset_name: str = "captionkit"
) -> Path:
    """Write Karpathy's split format; `read_karpathy` reads it back to the same records.

    dev is written as "val"; a record in no split gets `"split": null`. `filepath` is the image folder relative to
    the JSON file, so the pair moves together. Ids that are not the file name are kept: a numeric id as `cocoid`
    (as in dataset_coco.json), any other as `image_id`.
    """
    path = Path(path)
    images, sentence_id = [], 0
    folders: dict[Path, str] = {}  # image folder -> filepath; computed once per folder, not per image
    for index, record in enumerate(_records(dataset)):
        sentences = []
        for caption in record.captions:
            sentences.append({"tokens": word_tokenize(caption), "raw": caption, "imgid": index, "sentid": sentence_id})
            sentence_id += 1
        item: dict[str, Any] = {
            "filepath": folders.get(record.image_path.parent)
            or folders.setdefault(record.image_path.parent, _relative_dir(record.image_path.parent, path.parent)),
            "filename": record.image_path.name,
            "imgid": index,
            "split": KARPATHY_SPLITS[record.split],
            "sentids": [s["sentid"] for s in sentences],
            "sentences": sentences,
        }
        if isinstance(_coco_id(record.image_id), int):
            item["cocoid"] = int(record.image_id)
        elif record.image_id != record.image_path.name:
            item["image_id"] = record.image_id
        images.append(item)
    if not images:
        raise DatasetError(f"{path}: nothing to write (no records)")
    return _write_json(path, {"dataset": dataset_name, "images": images})


def write_coco_references(
    dataset: CaptionDataset | Iterable[Record], path: str | Path, *, split: str | None = None
) -> Path:
    """Write COCO caption references for one split (all records when `split` is None), as pycocoevalcap and
    pycocotools read them: {"images": [{"id", "file_name"}], "annotations": [{"id", "image_id", "caption"}]}.

    `file_name` is relative to the images' common folder (the bare name when all share one folder); read it back
    with `read_coco(..., image_dir=that folder)`.
    """
    records = _records(dataset, split)
    if not records:
        raise DatasetError(f"{path}: nothing to write (no records{f' in split {split!r}' if split else ''})")
    root = Path(os.path.commonpath([str(r.image_path.parent.absolute()) for r in records]))
    images, annotations = [], []
    for record in records:
        image_id = _coco_id(record.image_id)
        file_name = Path(os.path.relpath(record.image_path.absolute(), root)).as_posix()
        images.append({"id": image_id, "file_name": file_name})
        for caption in record.captions:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": caption})
    data = {
        "info": {"description": f"captionkit references ({split or 'all splits'})"},
        "licenses": [],
        "type": "captions",
        "images": images,
        "annotations": annotations,
    }
    return _write_json(path, data)
