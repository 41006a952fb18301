"""Caption results files: COCO results (`[{"image_id", "caption"}]`, JSON or JSONL) and references to score them.

References come from a COCO annotations file (`{"annotations": [{"image_id", "caption"}], "images": [...]}`) or from
any dataset captionkit reads (captionkit.data.formats.load_dataset) and one of its splits. Image ids are compared as
strings, so the integer ids of COCO files match the string ids of datasets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit.errors import DatasetError


@dataclass
class References:
    """{image id: [captions]} plus where each image is (for CLIPScore), when known."""

    captions: dict[str, list[str]]
    image_paths: dict[str, Path] = field(default_factory=dict)
    source: str = ""


def _load_json_or_jsonl(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from exc
    if path.suffix.lower() == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
        return rows
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected COCO results "
            '[{"image_id": ..., "caption": ...}] or JSONL of the same'
        ) from exc


def read_candidates(path: str | os.PathLike) -> dict[str, str]:
    """{image id: caption} from a COCO results file (JSON list or JSONL). Two captions for one id is an error."""
    path = Path(path)
    rows = _load_json_or_jsonl(path)
    if isinstance(rows, dict) and isinstance(rows.get("annotations"), list):
        rows = rows["annotations"]
    if not isinstance(rows, list):
        raise DatasetError(f'{path}: expected COCO results, a list of {{"image_id": ..., "caption": ...}}')
    out: dict[str, str] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "image_id" not in row or not isinstance(row.get("caption"), str):
            raise DatasetError(f'{path}: entry {i} is not {{"image_id": ..., "caption": "..."}}: {row!r:.80}')
        key = str(row["image_id"])
        if key in out:
            raise DatasetError(
                f"{path}: entry {i}: image id {key!r} has a second caption; COCO results have one caption per image"
            )
        out[key] = row["caption"]
    return out


def read_references(
    path: str | os.PathLike, split: str | None = "test", images: str | os.PathLike | None = None
) -> References:
    """References from a COCO annotations JSON (all its images; `split` is not used) or a dataset + split.

    `images`: a folder that holds the images (overrides the dataset's own image paths) for CLIPScore."""
    path = Path(path)
    image_dir = Path(images) if images is not None else None
    if path.is_file() and path.suffix.lower() == ".json":
        data = _load_json_or_jsonl(path)
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):
            return _coco_references(path, data, image_dir)
    from captionkit.data.formats import load_dataset

    dataset = load_dataset(path)
    records = dataset.split(split) if split else list(dataset.records)
    if not records:
        raise DatasetError(f"{path}: no images in split {split!r}")
    captions = {r.image_id: list(r.captions) for r in records}
    paths = {r.image_id: (image_dir / r.image_path.name if image_dir else r.image_path) for r in records}
    return References(captions, paths, f"{path} ({split or 'all'})")


def _coco_references(path: Path, data: dict[str, Any], image_dir: Path | None) -> References:
    captions: dict[str, list[str]] = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise DatasetError(f'{path}: annotations[{i}] is not {{"image_id": ..., "caption": "..."}}')
        captions.setdefault(str(ann["image_id"]), []).append(ann["caption"])
    names = {
        str(im["id"]): im["file_name"]
        for im in data.get("images", [])
        if isinstance(im, dict) and "id" in im and "file_name" in im
    }
    paths = {}
    if image_dir is not None:
        paths = {key: image_dir / names.get(key, key) for key in captions}
    return References(captions, paths, str(path))


def match_ids(
    references: Mapping[str, Any],
    candidates: Mapping[str, Any],
    ref_name: str,
    cand_name: str,
    allow_missing: bool = False,
) -> tuple[list[str], str | None]:
    """The ids to score (the references' order) and a warning, or DatasetError when the id sets differ.

    With allow_missing the ids in both files are scored and the warning says what was left out."""
    only_ref = [k for k in references if k not in candidates]
    only_cand = [k for k in candidates if k not in references]
    common = [k for k in references if k in candidates]
    if not only_ref and not only_cand:
        return common, None
    parts = []
    if only_ref:
        parts.append(
            f"{len(only_ref)} image id(s) in {ref_name} have no caption in {cand_name}, e.g. {', '.join(only_ref[:3])}"
        )
    if only_cand:
        parts.append(
            f"{len(only_cand)} image id(s) in {cand_name} are not in {ref_name}, e.g. {', '.join(only_cand[:3])}"
        )
    message = "; ".join(parts)
    if not allow_missing:
        raise DatasetError(f"{message} (pass --allow-missing to score the {len(common)} image(s) in both)")
    if not common:
        raise DatasetError(f"{message}: no image is in both files")
    return common, f"{message}; scoring the {len(common)} image(s) in both"


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (UTF-8, indented), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def coco_results(captions: Mapping[str, str]) -> list[dict[str, str]]:
    """{image id: caption} -> COCO results format."""
    return [{"image_id": key, "caption": caption} for key, caption in captions.items()]
