"""Generic caption tables: CSV, TSV and JSON Lines, one caption per row or a list of captions per row."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from captionkit.data.formats.common import (
    DEFAULT_SPLIT_FRACTIONS,
    CaptionCollector,
    ProblemLog,
    ReadResult,
    check_fractions,
    check_restval,
    find_image_dir,
    hash_split,
    hash_split_source,
    make_dataset,
    next_csv_row,
    normalize_split,
    read_text,
)
from captionkit.errors import DatasetError

IMAGE_COLUMNS = ("image", "image_id", "file_name", "filename", "image_name", "image_path", "file", "path", "img")
CAPTION_COLUMNS = ("caption", "captions", "text", "sentence", "sentences", "comment", "raw")
NUMBERED_CAPTION = re.compile(r"(caption|comment|sentence)_?\d+$")
TABLE_FILES = ("captions.csv", "captions.tsv", "captions.jsonl", "metadata.csv", "metadata.jsonl")


def find_table(directory: Path) -> Path | None:
    for name in TABLE_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def _rows_csv(path: Path, text: str, delimiter: str, problems: ProblemLog) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next_csv_row(reader, path, problems)
    if not header:
        raise DatasetError(f"{path}:1: expected a header row naming the columns")
    names = [h.strip().lower() for h in header]
    while True:
        row = next_csv_row(reader, path, problems)
        if row is None:
            return
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            problems.error(
                "malformed_line",
                path,
                reader.line_num,
                f"expected {len(names)} columns ({delimiter.join(names)[:60]}), got {len(row)}",
            )
            continue
        yield reader.line_num, dict(zip(names, row))


def _rows_jsonl(path: Path, text: str, problems: ProblemLog) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            problems.error("malformed_line", path, number, f"not a JSON object ({exc})")
            continue
        if not isinstance(row, dict):
            problems.error("malformed_line", path, number, f"expected a JSON object, got {type(row).__name__}")
            continue
        yield number, {str(k).strip().lower(): v for k, v in row.items()}


def _pick(columns: Iterable[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    columns = list(columns)
    if wanted is not None:
        name = str(wanted).strip().lower()  # header names are matched case-insensitively
        if name not in columns:
            raise DatasetError(f"{path}: no {what} column {wanted!r}; columns: {', '.join(columns)}")
        return name
    for name in candidates:
        if name in columns:
            return name
    raise DatasetError(
        f"{path}: cannot tell which column holds the {what} (looked for {', '.join(candidates)}); "
        f"columns: {', '.join(columns)}; pass {what}_column=..."
    )


def _captions(value: Any) -> list[str] | None:
    """A cell's captions: a string, a list of strings, or (CSV) a JSON list written into one cell."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            try:
                parsed = json.loads(stripped)
            except (json.JSONDecodeError, RecursionError):
                return [value]
            return parsed if isinstance(parsed, list) and all(isinstance(c, str) for c in parsed) else [value]
        return [value]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return value
    return None


def read_table(
    path: Path,
    problems: ProblemLog,
    *,
    fmt: str = "csv",
    image_column: str | None = None,
    caption_column: str | list[str] | None = None,
    split_column: str | None = "auto",
    image_dir: str | Path | None = None,
    delimiter: str | None = None,
    restval: str | None = "train",
    split_seed: int = 0,
    split_fractions: Iterable[float] = DEFAULT_SPLIT_FRACTIONS,
    split_fallback: str = "hash",
) -> ReadResult:
    """A CSV/TSV (header row) or JSONL file with an image column and one or more caption columns.

    Columns are found by name unless given: image (image, file_name, filename, ...), caption (caption, captions,
    text, ...; or caption_1..caption_N, all used), split ("split" if present; split_column=None ignores it).
    A caption cell holds one caption, or several as a JSON list (a list value in JSONL). Several rows may name
    the same image. Images are `image_dir/VALUE`; without image_dir, a VALUE with a folder in it is relative to
    the table's folder, a bare file name to the conventional image folder beside the table (Images/, images/).
    Without a split column, `split_fallback="hash"` applies `hash_split` (seeded); "none" leaves splits empty.
    """
    restval = check_restval(restval)
    if split_fallback not in ("hash", "none"):
        raise DatasetError(f"option split_fallback={split_fallback!r}: expected 'hash' or 'none'")
    text = read_text(path, problems)
    if fmt == "jsonl":
        rows = list(_rows_jsonl(path, text, problems))
    else:
        sep = delimiter or ("\t" if fmt == "tsv" else ",")
        if not isinstance(sep, str) or len(sep) != 1:
            raise DatasetError(f"option delimiter={sep!r}: expected one character")
        rows = list(_rows_csv(path, text, sep, problems))
    if not rows:
        raise DatasetError(f"{path}: no rows found")
    columns = list(dict.fromkeys(k for _, row in rows for k in row))
    image_col = _pick(columns, image_column, IMAGE_COLUMNS, "image", path)
    if isinstance(caption_column, (list, tuple)):
        caption_cols = [_pick(columns, c, CAPTION_COLUMNS, "caption", path) for c in caption_column]
    elif caption_column is None and not any(c in columns for c in CAPTION_COLUMNS):
        caption_cols = [c for c in columns if NUMBERED_CAPTION.match(c)]
        if not caption_cols:
            _pick(columns, None, CAPTION_COLUMNS, "caption", path)  # raises, naming what was looked for
    else:
        caption_cols = [_pick(columns, caption_column, CAPTION_COLUMNS, "caption", path)]
    split_col = (
        ("split" if "split" in columns else None)
        if split_column == "auto"
        else (None if split_column is None else _pick(columns, split_column, (), "split", path))
    )
    table_dir = path.parent
    flat_dir = Path(image_dir) if image_dir is not None else (find_image_dir([table_dir], None) or table_dir)

    collector = CaptionCollector(problems)
    split_of: dict[str, str | None] = {}
    for number, row in rows:
        value = row.get(image_col)
        image_id = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not image_id:
            problems.error("malformed_line", path, number, f"no image in column {image_col!r}")
            continue
        if split_col is not None:
            try:
                split_of.setdefault(image_id, normalize_split(row.get(split_col), restval))
            except KeyError:
                problems.error(
                    "bad_split",
                    path,
                    number,
                    f"unknown split {row.get(split_col)!r} (expected train, dev/val, test, restval or empty)",
                )
                continue
        if image_dir is not None or ("/" not in image_id and "\\" not in image_id):
            image_path = flat_dir / image_id
        else:
            image_path = table_dir / image_id
        for col in caption_cols:
            captions = _captions(row.get(col, ""))
            if captions is None:
                problems.error("malformed_line", path, number, f"column {col!r}: expected a caption or a list of them")
                continue
            for caption in captions:
                collector.add(image_id, caption, path, number, image_path=image_path)
    if split_col is not None:
        source, lookup = f"column {split_col!r} of {path.name}", split_of.get
    elif split_fallback == "hash":
        fractions = check_fractions(split_fractions)
        source, lookup = hash_split_source(split_seed, fractions), (lambda i: hash_split(i, split_seed, fractions))
    else:
        source, lookup = "none (split_fallback='none')", (lambda i: None)
    records = collector.records(lambda i: flat_dir / i, lookup, path)
    return ReadResult(make_dataset(records, table_dir, fmt, [path]), problems.problems, None, source)
