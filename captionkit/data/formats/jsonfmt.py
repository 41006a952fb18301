"""Karpathy split JSON (`dataset_{coco,flickr8k,flickr30k}.json`) and COCO caption annotations (`captions_*.json`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from captionkit.data.formats.common import (
    CaptionCollector,
    ProblemLog,
    ReadResult,
    check_restval,
    find_image_dir,
    make_dataset,
    normalize_split,
    read_text,
)
from captionkit.errors import DatasetError


def _only(found: list[Path], directory: Path, what: str) -> Path | None:
    if len(found) > 1:
        raise DatasetError(
            f"{directory}: several {what} files ({', '.join(p.name for p in found)}); pass the one to read"
        )
    return found[0] if found else None


def find_karpathy(directory: Path) -> Path | None:
    return _only(sorted(directory.glob("dataset_*.json")), directory, "Karpathy split")


def find_coco(directory: Path) -> Path | None:
    found = sorted(directory.glob("captions_*.json")) or sorted((directory / "annotations").glob("captions_*.json"))
    return _only(found, directory, "COCO caption annotation")


def load_json(path: Path, problems: ProblemLog) -> Any:
    """Parsed JSON; a file that does not parse is unusable as a whole, so this raises even in lenient mode."""
    text = read_text(path, problems)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    except RecursionError as exc:
        raise DatasetError(f"{path}: not valid JSON (nested too deeply)") from exc


def _id(value: Any) -> str | None:
    """An image id from JSON (COCO uses integers); anything but a non-empty string or an integer is no id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _top_list(data: Any, key: str, path: Path, what: str) -> list[Any]:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DatasetError(f"{path}: expected {what}: a JSON object with an {key!r} list")
    return items


def read_karpathy(
    path: Path,
    problems: ProblemLog,
    *,
    image_dir: str | Path | None = None,
    restval: str | None = "train",
    data: Any = None,
) -> ReadResult:
    """Karpathy's split file: images[] of {filename, filepath?, split, sentences[{raw, tokens}], cocoid?}.

    Splits: "train" -> train, "val" -> dev, "test" -> test, "restval" -> `restval` (train by default, as in the
    papers that use this split; None leaves those images in no split). The image id is `image_id` if present
    (written by captionkit for ids that are not file names), else `cocoid`, else `filename`. Image paths are
    `image_dir/filepath/filename`, where image_dir defaults to the JSON file's folder, or for files without
    `filepath` (Flickr8k/30k) to a conventional image folder beside it.
    """
    restval = check_restval(restval)
    items = _top_list(load_json(path, problems) if data is None else data, "images", path, "a Karpathy split file")
    base = Path(image_dir) if image_dir is not None else path.parent
    flat_dir = Path(image_dir) if image_dir is not None else (find_image_dir([path.parent], None) or path.parent)
    collector = CaptionCollector(problems)
    split_of: dict[str, str | None] = {}
    folders: dict[str, Path] = {}  # filepath -> its folder, normalised once per folder rather than per image
    for i, item in enumerate(items):
        where = f"images[{i}]: "
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("filename"), str)
            or not item["filename"]
            or not isinstance(item.get("sentences"), list)
        ):
            problems.error(
                "malformed_item",
                path,
                None,
                f"{where}expected an object with 'filename' (string) and 'sentences' (list)",
            )
            continue
        image_id = _id(item.get("image_id", item.get("cocoid", item["filename"])))
        filepath = item.get("filepath")
        if image_id is None or not isinstance(filepath, (str, type(None))):
            problems.error("malformed_item", path, None, f"{where}bad image id or filepath")
            continue
        try:
            split = normalize_split(item.get("split"), restval)
        except KeyError:
            problems.error(
                "bad_split",
                path,
                None,
                f"{where}unknown split {item.get('split')!r} (expected train, val, test or restval)",
            )
            continue
        if image_id in split_of:
            problems.warn("duplicate_image", path, None, f"{where}{image_id} appears more than once; captions merged")
        split_of.setdefault(image_id, split)
        if filepath and filepath not in folders:
            folders[filepath] = Path(os.path.normpath(base / filepath))
        image_path = (folders[filepath] if filepath else flat_dir) / item["filename"]
        for j, sentence in enumerate(item["sentences"]):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            if raw is None and isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
                raw = " ".join(str(t) for t in sentence["tokens"])
            if not isinstance(raw, str):
                problems.error(
                    "malformed_item",
                    path,
                    None,
                    f"{where}sentences[{j}]: expected {{'raw': caption}} or {{'tokens': [...]}}",
                )
                continue
            collector.add(image_id, raw, path, None, image_path=image_path, where=f"{where}sentences[{j}]: ")
    records = collector.records(lambda i: flat_dir / i, split_of.get, path)
    source = f"split field of {path.name} (restval -> {restval})"
    return ReadResult(make_dataset(records, path.parent, "karpathy", [path]), problems.problems, None, source)


def _coco_split(path: Path, split: str | None) -> str | None:
    if split != "auto":
        try:
            return normalize_split(split)
        except KeyError:
            raise DatasetError(f"option split={split!r}: expected train, dev (val), test, auto or None") from None
    stem = path.stem.lower()
    for word, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        if word in stem:
            return name
    return None


def _coco_image_dir(path: Path, image_dir: str | Path | None) -> Path:
    if image_dir is not None:
        return Path(image_dir)
    match = re.match(r"captions_(\w+)$", path.stem)  # captions_train2014.json -> train2014/
    roots = [path.parent, path.parent.parent]
    if match:
        for root in roots:
            if (root / match.group(1)).is_dir():
                return root / match.group(1)
    return find_image_dir(roots, None) or path.parent


def read_coco(
    path: Path,
    problems: ProblemLog,
    *,
    image_dir: str | Path | None = None,
    split: str | None = "auto",
    data: Any = None,
) -> ReadResult:
    """COCO caption annotations: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}.

    One file holds one split: `split="auto"` takes it from the file name (captions_train2014 -> train,
    captions_val2014 -> dev), or pass train/dev/test/None. Images are `image_dir/file_name`; image_dir defaults to
    the folder named after the file (`train2014/` beside the JSON or beside its `annotations/` folder).
    """
    split_name = _coco_split(path, split)
    data = load_json(path, problems) if data is None else data
    images = _top_list(data, "images", path, "COCO caption annotations")
    annotations = _top_list(data, "annotations", path, "COCO caption annotations")
    folder = _coco_image_dir(path, image_dir)
    collector = CaptionCollector(problems)
    files: dict[str, str] = {}
    for i, image in enumerate(images):
        image_id = _id(image.get("id")) if isinstance(image, dict) else None
        name = image.get("file_name") if isinstance(image, dict) else None
        if image_id is None or not isinstance(name, str) or not name:
            problems.error("malformed_item", path, None, f"images[{i}]: expected {{'id': int, 'file_name': str}}")
            continue
        if image_id in files:
            problems.warn("duplicate_image", path, None, f"images[{i}]: image id {image_id} listed twice")
            continue
        files[image_id] = name
        collector.captions[image_id] = []  # keeps images[] order; images left without captions are reported
    for k, ann in enumerate(annotations):
        image_id = _id(ann.get("image_id")) if isinstance(ann, dict) else None
        caption = ann.get("caption") if isinstance(ann, dict) else None
        if image_id is None or not isinstance(caption, str):
            problems.error(
                "malformed_item", path, None, f"annotations[{k}]: expected {{'image_id': int, 'caption': str}}"
            )
            continue
        if image_id not in files:
            problems.error("unknown_image", path, None, f"annotations[{k}]: image_id {image_id} is not in images[]")
            continue
        collector.add(image_id, caption, path, None, image_path=folder / files[image_id], where=f"annotations[{k}]: ")
    records = collector.records(lambda i: folder / files[i], lambda i: split_name, path)
    source = f"option split={split!r}" + (f" (from the file name: {split_name})" if split == "auto" else "")
    return ReadResult(make_dataset(records, path.parent, "coco", [path]), problems.problems, None, source)
