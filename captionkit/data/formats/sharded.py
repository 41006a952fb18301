"""Sharded datasets: WebDataset tars (img2dataset layout), parquet files and Hugging Face datasets, read into Records
whose images stay inside their shards (Record.image_member), never unpacked to disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from captionkit.data.formats.common import (
    DEFAULT_SPLIT_FRACTIONS,
    ProblemLog,
    ReadResult,
    check_fractions,
    hash_split,
    hash_split_source,
    make_dataset,
    normalize_split,
)
from captionkit.data.formats.table import CAPTION_COLUMNS, IMAGE_COLUMNS, NUMBERED_CAPTION
from captionkit.data.records import SPLITS, Record
from captionkit.data.shards import expand_shards, iter_table_rows, list_tar, table_columns
from captionkit.errors import DatasetError

HF_PREFIX = "hf:"
KEY_COLUMNS = ("key", "__key__", "image_id", "id", "file_name", "filename")
TABLE_IMAGE_COLUMNS = IMAGE_COLUMNS + ("jpg", "png", "webp", "image_bytes")
TABLE_CAPTION_COLUMNS = CAPTION_COLUMNS + ("txt", "alt_text", "alt")


class _Splits:
    """The split of each image: one fixed split (option split=train for a pretraining corpus), a split column or
    Hugging Face split name, else the seeded hash of the image id (or none)."""

    def __init__(self, split: str | None, seed: int, fractions: Iterable[float], fallback: str) -> None:
        if split is not None and normalize_split_or_none(split) is None:
            raise DatasetError(f"option split={split!r}: expected one of {list(SPLITS)}")
        if fallback not in ("hash", "none"):
            raise DatasetError(f"option split_fallback={fallback!r}: expected 'hash' or 'none'")
        self.fixed = normalize_split_or_none(split) if split is not None else None
        self.fractions = check_fractions(fractions)
        self.seed, self.fallback = seed, fallback
        self.from_data = False

    def of(self, image_id: str, given: Any = None) -> str | None:
        if self.fixed is not None:
            return self.fixed
        if given is not None:
            self.from_data = True
            return normalize_split(given)
        return hash_split(image_id, self.seed, self.fractions) if self.fallback == "hash" else None

    def source(self, given_by: str) -> str:
        if self.fixed is not None:
            return f"option split={self.fixed} (every image)"
        if self.from_data:
            return given_by
        return hash_split_source(self.seed, self.fractions) if self.fallback == "hash" else "none"


def normalize_split_or_none(value: Any) -> str | None:
    try:
        return normalize_split(value)
    except KeyError:
        return None


class _Collect:
    """Records in first-seen order; an id seen twice keeps its first image and gains the new captions."""

    def __init__(self, problems: ProblemLog) -> None:
        self.problems = problems
        self.records: dict[str, Record] = {}

    def add(
        self, image_id: str, image_path: Path, member: str | None, captions: list[str], split: str | None, where: str
    ) -> None:
        clean = [c.strip() for c in captions if isinstance(c, str) and c.strip()]
        if len(clean) < len([c for c in captions if c is not None]):
            self.problems.warn("empty_caption", where, None, f"empty caption for {image_id} (skipped)")
        old = self.records.get(image_id)
        if old is not None:
            self.problems.warn("duplicate_key", where, None, f"{image_id} appears again; its first image is used")
            clean = [c for c in clean if c not in old.captions]
            self.records[image_id] = Record(
                old.image_id, old.image_path, old.captions + tuple(clean), old.split, old.image_member
            )
            return
        if not clean:
            self.problems.warn("no_captions", where, None, f"{image_id} has no caption (left out)")
            return
        self.records[image_id] = Record(image_id, image_path, tuple(dict.fromkeys(clean)), split, member)


def read_webdataset(
    spec: str | Path,
    problems: ProblemLog,
    *,
    split: str | None = None,
    split_seed: int = 0,
    split_fractions: Iterable[float] = DEFAULT_SPLIT_FRACTIONS,
    split_fallback: str = "hash",
) -> ReadResult:
    """WebDataset tar shards in img2dataset's layout: KEY.jpg (or .png/.webp) + KEY.txt (the caption) + optional
    KEY.json (a "caption" there is used when KEY.txt is absent). `spec`: a brace pattern, a list file, a folder
    of shards or one shard. Each record's image stays in its tar (image_member = the member name). A key with no
    image, or a shard cut short (a corrupt member), is reported and skipped, never fatal."""
    splits = _Splits(split, split_seed, split_fractions, split_fallback)
    shards = expand_shards(spec)
    collect = _Collect(problems)
    for shard in shards:
        samples, stopped = list_tar(shard)
        if stopped is not None:
            problems.warn(
                "corrupt_shard",
                shard,
                None,
                f"unreadable after {len(samples)} samples ({stopped}); the samples before it are used",
            )
        for sample in samples:
            if sample.image is None:
                problems.warn("no_image", shard, None, f"sample {sample.key} has no image member (skipped)")
                continue
            meta = _json_meta(sample.meta, shard, sample.key, problems)
            caption = sample.text if sample.text is not None else meta.get("caption")
            if caption is None:
                problems.warn("no_captions", shard, None, f"sample {sample.key} has no .txt caption (left out)")
                continue
            try:
                split_name = splits.of(sample.key, meta.get("split"))
            except KeyError:
                problems.warn(
                    "bad_split", shard, None, f"{sample.key}.json: unknown split {meta.get('split')!r} (left out)"
                )
                continue
            collect.add(sample.key, shard, sample.image, [caption], split_name, str(shard))
    root = shards[0].parent
    return ReadResult(
        make_dataset(list(collect.records.values()), root, "webdataset", shards),
        problems.problems,
        None,
        splits.source('the "split" field of KEY.json'),
    )


def _json_meta(raw: bytes | None, shard: Path, key: str, problems: ProblemLog) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        problems.warn("malformed_json", shard, None, f"{key}.json is not JSON (ignored)")
        return {}
    return meta if isinstance(meta, dict) else {}


def read_parquet(
    spec: str | Path,
    problems: ProblemLog,
    *,
    image_column: str | None = None,
    caption_column: str | list[str] | None = None,
    key_column: str | None = None,
    split_column: str | None = "auto",
    split: str | None = None,
    split_seed: int = 0,
    split_fractions: Iterable[float] = DEFAULT_SPLIT_FRACTIONS,
    split_fallback: str = "hash",
) -> ReadResult:
    """Parquet files (a file, folder, brace pattern or list file) with an image column (bytes, a Hugging Face Image
    struct {bytes, path}, or a path relative to the file's folder) and one or more caption columns (a caption or
    a list of captions per cell). Columns are found by name unless given; rows without a key column are named
    SHARD/ROW."""
    splits = _Splits(split, split_seed, split_fractions, split_fallback)
    shards = expand_shards(spec)
    collect = _Collect(problems)
    columns = _TableColumns(image_column, caption_column, key_column, split_column)
    for shard in shards:
        _read_table_shard(shard, columns, splits, collect, None)
    return ReadResult(
        make_dataset(list(collect.records.values()), shards[0].parent, "parquet", shards),
        problems.problems,
        None,
        splits.source(f"column {columns.split!r}" if columns.split else "the Hugging Face split names"),
    )


def read_hf(
    spec: str | Path,
    problems: ProblemLog,
    *,
    image_column: str | None = None,
    caption_column: str | list[str] | None = None,
    key_column: str | None = None,
    split_column: str | None = "auto",
    split: str | None = None,
    split_seed: int = 0,
    split_fractions: Iterable[float] = DEFAULT_SPLIT_FRACTIONS,
    split_fallback: str = "hash",
    revision: str | None = None,
) -> ReadResult:
    """A Hugging Face dataset: a folder written by `save_to_disk` (a Dataset or a DatasetDict of splits), or
    `hf:NAME` loaded from the hub (needs the network the first time; then from the local cache). Rows are read
    from the dataset's arrow files (memory-mapped); HF split names (train/validation/test) become the splits."""
    splits = _Splits(split, split_seed, split_fractions, split_fallback)
    text = str(spec)
    files = _hf_arrow_files(text, revision)  # [(arrow file, HF split name or None)]
    collect = _Collect(problems)
    columns = _TableColumns(image_column, caption_column, key_column, split_column)
    for shard, hf_split in files:
        _read_table_shard(shard, columns, splits, collect, hf_split)
    root = files[0][0].parent
    return ReadResult(
        make_dataset(list(collect.records.values()), root, "hf", [f for f, _ in files]),
        problems.problems,
        None,
        splits.source(f"column {columns.split!r}" if columns.split else "the Hugging Face split names"),
    )


def _hf_arrow_files(spec: str, revision: str | None) -> list[tuple[Path, str | None]]:
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError(
            f"{spec}: reading Hugging Face datasets needs the `datasets` package: pip install 'captionkit[scale]'"
        ) from exc
    if spec.startswith(HF_PREFIX):
        name = spec[len(HF_PREFIX) :]
        try:
            loaded = datasets.load_dataset(name, revision=revision)
        except Exception as exc:  # noqa: BLE001 - the hub raises many types (offline, unknown name, no access)
            offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
            raise DatasetError(
                f"{spec}: cannot load {name!r} from the Hugging Face hub"
                + (" (offline: HF_HUB_OFFLINE=1)" if offline else "")
                + f" ({type(exc).__name__}: {str(exc)[:200]}); on a machine with network access "
                "run it once (it is cached) or `save_to_disk` it and pass that folder"
            ) from exc
    else:
        path = Path(spec)
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(
                f"{path}: not a Hugging Face dataset folder (no state.json or dataset_dict.json "
                f"written by save_to_disk): {exc}"
            ) from exc
    parts = loaded.items() if isinstance(loaded, dict) else [(None, loaded)]
    files = [(Path(f["filename"]), name) for name, ds in parts for f in ds.cache_files]
    if not files:
        raise DatasetError(f"{spec}: the dataset has no arrow files on disk (an in-memory dataset); save_to_disk it")
    return files


class _TableColumns:
    """Which columns of a table hold the key, image, captions and split; found once, from the first shard."""

    def __init__(self, image: str | None, caption: str | list[str] | None, key: str | None, split: str | None) -> None:
        self.wanted = (image, caption, key, split)
        self.resolved: dict[str, Any] | None = None
        self.split: str | None = None

    def resolve(self, shard: Path, hf_split: str | None) -> dict[str, Any]:
        if self.resolved is not None:
            return self.resolved
        image, caption, key, split = self.wanted
        types = table_columns(shard)
        lower = {name.lower(): name for name in types}

        def pick(wanted: str | None, candidates: tuple[str, ...], what: str) -> str | None:
            if wanted is not None:
                if str(wanted).lower() not in lower:
                    raise DatasetError(f"{shard}: no {what} column {wanted!r}; columns: {', '.join(types)}")
                return lower[str(wanted).lower()]
            found = next((lower[c] for c in candidates if c in lower), None)
            if found is None and what in ("image", "caption"):
                raise DatasetError(
                    f"{shard}: cannot tell which column holds the {what} (looked for "
                    f"{', '.join(candidates)}); columns: {', '.join(types)}; name it "
                    f"with the dataset option {what}_column=NAME"
                )
            return found

        image_col = pick(image, TABLE_IMAGE_COLUMNS, "image")
        if isinstance(caption, (list, tuple)):
            caption_cols = [pick(c, (), "caption") for c in caption]
        elif caption is None and not any(c in lower for c in TABLE_CAPTION_COLUMNS):
            caption_cols = [name for name in types if NUMBERED_CAPTION.match(name.lower())]
            if not caption_cols:
                pick(None, TABLE_CAPTION_COLUMNS, "caption")  # raises, naming what was looked for
        else:
            caption_cols = [pick(caption, TABLE_CAPTION_COLUMNS, "caption")]
        key_col = pick(key, tuple(k for k in KEY_COLUMNS if lower.get(k) != image_col), "key")
        split_col = lower.get("split") if split == "auto" else pick(split, (), "split") if split else None
        self.split = split_col
        kind = types[image_col]
        self.resolved = {
            "image": image_col,
            "captions": caption_cols,
            "key": key_col,
            "split": split_col,
            "image_is_path": kind in ("string", "large_string"),
        }
        return self.resolved


def _read_table_shard(
    shard: Path, columns: _TableColumns, splits: _Splits, collect: _Collect, hf_split: str | None
) -> None:
    c = columns.resolve(shard, hf_split)
    wanted = [n for n in [c["key"], c["split"], *c["captions"]] if n is not None]
    if c["image_is_path"]:
        wanted.append(c["image"])  # paths are small: read them here; bytes stay in the shard
    stem = shard.name.rsplit(".", 1)[0]
    for row, values in enumerate(iter_table_rows(shard, list(dict.fromkeys(wanted)))):
        key = values.get(c["key"]) if c["key"] else None
        image_id = str(key) if key not in (None, "") else f"{stem}/{row}"
        captions: list[Any] = []
        for col in c["captions"]:
            cell = values.get(col)
            captions += cell if isinstance(cell, list) else [cell]
        given = values.get(c["split"]) if c["split"] else hf_split
        try:
            split_name = splits.of(image_id, given)
        except KeyError:
            collect.problems.warn("bad_split", shard, row + 1, f"unknown split {given!r} for {image_id} (left out)")
            continue
        if c["image_is_path"]:
            value = values.get(c["image"])
            if not value:
                collect.problems.warn("no_image", shard, row + 1, f"{image_id}: empty image path (left out)")
                continue
            path = Path(value) if Path(value).is_absolute() else shard.parent / value
            collect.add(image_id, path, None, captions, split_name, str(shard))
        else:
            collect.add(image_id, shard, f"{c['image']}[{row}]", captions, split_name, str(shard))


def find_shards(suffixes: tuple[str, ...]) -> Callable[[Path], Path | None]:
    """A folder of shard files with one of `suffixes` is itself the dataset spec."""

    def find(directory: Path) -> Path | None:
        return directory if any(p.name.lower().endswith(suffixes) for p in directory.iterdir()) else None

    return find


def find_hf_dir(directory: Path) -> Path | None:
    return directory if (directory / "state.json").is_file() or (directory / "dataset_dict.json").is_file() else None
