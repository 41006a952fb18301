"""Read every common caption dataset format into a CaptionDataset, and write Karpathy/COCO JSON.

`load_dataset(path)` detects the format of a directory or file; `read_dataset` also returns the problems found
(strict mode raises DatasetError on malformed input, lenient mode collects it for `captionkit data check`).
Part of data: the same imports are allowed.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from captionkit.data.formats.common import Problem, ProblemLog, ReadResult, hash_split
from captionkit.data.formats.flickr import (
    find_flickr8k,
    find_flickr30k,
    find_kaggle,
    read_kaggle_captions,
    read_token_file,
)
from captionkit.data.formats.jsonfmt import find_coco, find_karpathy, load_json, read_coco, read_karpathy
from captionkit.data.formats.sharded import HF_PREFIX, find_hf_dir, find_shards, read_hf, read_parquet, read_webdataset
from captionkit.data.formats.table import TABLE_FILES, find_table, read_table
from captionkit.data.formats.writers import write_coco_references, write_karpathy
from captionkit.data.records import CaptionDataset
from captionkit.data.shards import TAR_SUFFIXES, is_shard_list, shard_suffix
from captionkit.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """A dataset format: how to find its caption file in a directory and how to read it."""

    name: str
    read: Callable[..., ReadResult]  # read(file, problems, **options)
    find: Callable[[Path], Path | None]  # the format's caption file inside a directory, if there is one
    looks_for: str  # what `find` looks for, for the error message when nothing matches


def _find_table_of(suffix: str) -> Callable[[Path], Path | None]:
    def find(directory: Path) -> Path | None:
        found = find_table(directory)
        return found if found is not None and found.suffix == suffix else None

    return find


# Detection order for a directory: the first format whose caption file is found wins.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        # before karpathy, whose dataset_*.json pattern matches save_to_disk's dataset_info.json
        Format("hf", read_hf, find_hf_dir, "state.json or dataset_dict.json (Hugging Face save_to_disk)"),
        Format(
            "flickr8k",
            partial(read_token_file, fmt="flickr8k"),
            find_flickr8k,
            "Text/Flickr8k.token.txt or Flickr8k.token.txt",
        ),
        Format("flickr30k", partial(read_token_file, fmt="flickr30k"), find_flickr30k, "results_20130124.token"),
        Format("kaggle", read_kaggle_captions, find_kaggle, "captions.txt (CSV image,caption)"),
        Format("karpathy", read_karpathy, find_karpathy, "dataset_*.json (Karpathy split)"),
        Format("coco", read_coco, find_coco, "captions_*.json or annotations/captions_*.json (COCO)"),
        Format("csv", partial(read_table, fmt="csv"), _find_table_of(".csv"), "captions.csv or metadata.csv"),
        Format("tsv", partial(read_table, fmt="tsv"), _find_table_of(".tsv"), "captions.tsv"),
        Format("jsonl", partial(read_table, fmt="jsonl"), _find_table_of(".jsonl"), "captions.jsonl or metadata.jsonl"),
        # Sharded formats (captionkit.data.formats.sharded): the spec may also be a brace pattern or a list file.
        Format("webdataset", read_webdataset, find_shards(TAR_SUFFIXES), "*.tar shards (KEY.jpg + KEY.txt)"),
        Format("parquet", read_parquet, find_shards((".parquet",)), "*.parquet files"),
    ]
}
SHARDED = ("webdataset", "parquet", "hf")


def reader_options(fmt: str) -> list[str]:
    """The options a format's reader accepts (keyword arguments of load_dataset)."""
    read = FORMATS[fmt].read
    bound = read.keywords if isinstance(read, partial) else {}
    return [
        name
        for name, p in inspect.signature(read).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in bound and name != "data"
    ]


def _detect_directory(directory: Path, fmt: str) -> tuple[str, Path]:
    candidates = [FORMATS[fmt]] if fmt != "auto" else list(FORMATS.values())
    for candidate in candidates:
        found = candidate.find(directory)
        if found is not None:
            return candidate.name, found
    looked = "; ".join(f"{c.name}: {c.looks_for}" for c in candidates)
    raise DatasetError(f"{directory}: no caption dataset found; looked for {looked}")


def _detect_file(path: Path, problems: ProblemLog) -> tuple[str, Any]:
    """(format, parsed JSON or None) for a caption file, from its name and first line or JSON shape."""
    name, suffix = path.name.lower(), path.suffix.lower()
    if shard_suffix(name) or (suffix == ".txt" and is_shard_list(path)):
        listed = path if shard_suffix(name) else Path(path.read_text(encoding="utf-8").split()[0])
        return (
            "webdataset"
            if listed.name.lower().endswith(TAR_SUFFIXES)
            else "hf"
            if listed.name.lower().endswith(".arrow")
            else "parquet"
        ), None
    if name.endswith((".token.txt", ".token")):
        return ("flickr30k" if "30k" in name or name.startswith("results") else "flickr8k"), None
    if suffix in (".csv", ".tsv", ".jsonl"):
        return suffix[1:], None
    if suffix == ".json":
        data = load_json(path, problems)
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            if "annotations" in data:
                return "coco", data
            first = next((i for i in data["images"] if isinstance(i, dict)), {})
            if "sentences" in first or not data["images"]:
                return "karpathy", data
        raise DatasetError(
            f"{path}: a JSON file that is neither a Karpathy split file (images[] with sentences) "
            "nor COCO caption annotations (images[] + annotations[])"
        )
    if suffix == ".txt":
        try:
            with path.open("rb") as f:
                first = f.readline(4096).decode("utf-8-sig", errors="replace").strip()
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        if first.replace(" ", "").lower() == "image,caption":
            return "kaggle", None
        key = first.partition("\t")[0]
        if "\t" in first and "#" in key:
            return "flickr8k", None
    raise DatasetError(
        f"{path}: cannot tell the dataset format from the name or first line; pass format= one of "
        f"{', '.join(FORMATS)} (a token file has IMAGE#N<TAB>caption lines; captions.txt starts "
        f"with the header image,caption; JSON must be Karpathy or COCO; tables are "
        f"{', '.join(TABLE_FILES)} or any .csv/.tsv/.jsonl)"
    )


def read_dataset(path: str | Path, format: str = "auto", *, strict: bool = True, **options: Any) -> ReadResult:
    """Read a dataset directory or caption file; the result holds the dataset and every problem found.

    strict=True raises DatasetError (naming file and line) at the first malformed line; strict=False collects
    malformed lines as problems and skips them. Either way, quirks that do not stop reading (the bogus Flickr8k key,
    empty or duplicate captions, ids missing from split lists) are collected, not raised. `options` go to the
    format's reader: see `reader_options(format)`.
    """
    if format != "auto" and format not in FORMATS:
        raise DatasetError(f"unknown dataset format {format!r}; valid: auto, {', '.join(FORMATS)}")
    spec = str(path)
    if spec.startswith(HF_PREFIX) or "{" in spec:  # a hub name or a brace pattern of shards: no file of that name
        fmt = (
            format
            if format != "auto"
            else "hf"
            if spec.startswith(HF_PREFIX)
            else "webdataset"
            if spec.lower().endswith(TAR_SUFFIXES)
            else "parquet"
        )
        return _read(fmt, spec, ProblemLog(strict=strict), options)
    path = Path(path).absolute()  # records carry absolute image paths, valid from any working directory
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    problems = ProblemLog(strict=strict)
    data = None
    if path.is_dir():
        fmt, file = _detect_directory(path, format)
    elif format == "auto":
        (fmt, data), file = _detect_file(path, problems), path
    else:
        fmt, file = format, path
    if data is not None:
        options["data"] = data
    return _read(fmt, file, problems, options)


def _read(fmt: str, file: Path | str, problems: ProblemLog, options: dict[str, Any]) -> ReadResult:
    valid = reader_options(fmt) + (["data"] if "data" in options else [])
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DatasetError(f"unknown option(s) {unknown} for format {fmt!r}; valid: {', '.join(valid) or '(none)'}")
    for key in ("image_dir", "split_dir"):  # relative to the working directory now, not wherever records are used
        if options.get(key) is not None:
            options[key] = Path(options[key]).absolute()
    return FORMATS[fmt].read(file, problems, **options)


def load_dataset(path: str | Path, format: str = "auto", *, strict: bool = True, **options: Any) -> CaptionDataset:
    """The dataset at `path` (a directory or caption file) as Records; problems are logged as one warning."""
    result = read_dataset(path, format, strict=strict, **options)
    if result.problems:
        kinds = Counter(p.kind for p in result.problems)
        log.warning(
            "%s: %s (`captionkit data check %s` lists them)",
            result.dataset.files[0],
            ", ".join(f"{n} {kind}" for kind, n in kinds.items()),
            path,
        )
    return result.dataset


__all__ = [
    "FORMATS",
    "SHARDED",
    "Problem",
    "ReadResult",
    "hash_split",
    "load_dataset",
    "read_dataset",
    "reader_options",
    "write_coco_references",
    "write_karpathy",
]
