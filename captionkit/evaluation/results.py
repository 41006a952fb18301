"""Caption results files and references to score them.

Candidates: COCO results (`[{"image_id", "caption"}]`, JSON or JSONL, e.g. `evaluate`'s predictions.json) or
`caption --out`'s JSONL/CSV rows (`{"path", "caption", ...}`; `caption --dataset`'s `{"key", "caption"}`), matched to
the references by image id, then by image path, then by file name.

References come from a COCO annotations file (`{"annotations": [{"image_id", "caption"}], "images": [...]}`) or from
any dataset captionkit reads (captionkit.data.formats.load_dataset) and one of its splits. Image ids are compared as
strings, so the integer ids of COCO files match the string ids of datasets.
"""

from __future__ import annotations

import csv
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
    scenes: dict[str, dict[str, Any]] | None = None  # a synthetic dataset's true scenes (object_f1)
    file_names: dict[str, str] = field(default_factory=dict)  # {image id: image file name}, when known

    def __post_init__(self) -> None:
        for key, path in self.image_paths.items():
            self.file_names.setdefault(key, Path(path).name)


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


_KEY_FIELDS = ("image_id", "path", "key")  # COCO results / `caption --out` / `caption --dataset`
_EXPECTED = (
    'expected COCO results [{"image_id": ..., "caption": ...}] or the rows `captionkit caption --out` writes '
    '({"path": ..., "caption": ...})'
)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read as CSV ({exc})") from exc


def read_candidates(path: str | os.PathLike) -> dict[str, str]:
    """{image id or image path: caption} from COCO results (JSON list or JSONL) or `caption --out` JSONL/CSV.

    Keys are the rows' image_id, else their path (or key); `align_candidates` matches them to references. Two
    captions for one key is an error."""
    path = Path(path)
    rows = _read_csv(path) if path.suffix.lower() in (".csv", ".tsv") else _load_json_or_jsonl(path)
    if isinstance(rows, dict) and isinstance(rows.get("annotations"), list):
        rows = rows["annotations"]
    if not isinstance(rows, list):
        raise DatasetError(f"{path}: {_EXPECTED}")
    out: dict[str, str] = {}
    for i, row in enumerate(rows):
        field_name = next((k for k in _KEY_FIELDS if isinstance(row, dict) and row.get(k) not in (None, "")), None)
        if field_name is None or not isinstance(row.get("caption"), str):
            found = ", ".join(map(str, row)) if isinstance(row, dict) else type(row).__name__
            raise DatasetError(f"{path}: entry {i + 1} has {found or 'no fields'}; {_EXPECTED}")
        key = str(row[field_name])
        if key in out:
            raise DatasetError(
                f"{path}: entry {i + 1}: {field_name} {key!r} has a second caption; one caption per image is scored"
            )
        out[key] = row["caption"]
    return out


def align_candidates(candidates: Mapping[str, str], references: References) -> dict[str, str]:
    """Candidates re-keyed by the references' image ids: a key that is an image id stays; else an image path
    (`caption`'s output) is matched to the reference image at that path, else to the one with that file name.
    Keys that match nothing stay as they are (`match_ids` reports them)."""
    by_path = {os.path.realpath(p): key for key, p in references.image_paths.items()}
    names: dict[str, set[str]] = {}
    for key in references.captions:
        for name in {key, references.file_names.get(key, key)}:
            names.setdefault(name, set()).add(key)
    out: dict[str, str] = {}
    for key, caption in candidates.items():
        target = key
        if key not in references.captions:
            target = by_path.get(os.path.realpath(key)) or key
            if target not in references.captions:
                found = names.get(Path(key).name, set())
                target = next(iter(found)) if len(found) == 1 else key  # an ambiguous file name matches nothing
        if target in out:
            raise DatasetError(f"two candidates are the caption of image {target!r} (the second is {key!r})")
        out[target] = caption
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
    from captionkit.evaluation.object_f1 import dataset_scenes

    dataset = load_dataset(path)
    records = dataset.split(split) if split else list(dataset.records)
    if not records:
        raise DatasetError(f"{path}: no images in split {split!r}")
    captions = {r.image_id: list(r.captions) for r in records}
    paths = {r.image_id: (image_dir / r.image_path.name if image_dir else r.image_path) for r in records}
    return References(captions, paths, f"{path} ({split or 'all'})", dataset_scenes(path))


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
    file_names = {key: Path(names[key]).name for key in captions if key in names}
    return References(captions, paths, str(path), file_names=file_names)


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
