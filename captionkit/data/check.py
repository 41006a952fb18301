"""`data check`: everything wrong with a dataset, found before hours of training depend on it."""

from __future__ import annotations

import io
import os
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from captionkit.data.formats import SHARDED, read_dataset
from captionkit.data.formats.common import Problem
from captionkit.data.images import load_image
from captionkit.data.records import SPLITS, Record, ShardImage
from captionkit.errors import ImageLoadError
from captionkit.models.tokenizers import word_tokenize


def _files_in(directory: Path) -> set[str]:
    """Names of the regular files in `directory`, from one listing (no stat per image: 8k images take ms)."""
    try:
        with os.scandir(directory) as entries:
            return {e.name for e in entries if e.is_file()}
    except OSError:
        return set()


def find_images(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """(records whose image file exists, records whose image is missing), listing each image folder once."""
    listings: dict[Path, set[str]] = {}
    found, missing = [], []
    for record in records:
        folder = record.image_path.parent
        if folder not in listings:
            listings[folder] = _files_in(folder)
        (found if record.image_path.name in listings[folder] else missing).append(record)
    return found, missing


def _decode_error(path: Path | ShardImage | BinaryIO, max_pixels: int | None) -> str | None:
    """Why the image at `path` cannot be used, or None when it decodes."""
    try:
        load_image(path, max_pixels=max_pixels)
    except ImageLoadError as exc:
        return str(exc)
    return None


def _length_stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 2),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def _decode_all(records: list[Record], max_pixels: int | None, progress: bool) -> list[tuple[Record, str]]:
    """(record, why) for each record whose image does not decode; shard images are streamed shard by shard."""
    from tqdm.auto import tqdm

    from captionkit.data.shards import TAR_SUFFIXES

    in_tars = [r for r in records if r.image_member is not None and r.image_path.name.lower().endswith(TAR_SUFFIXES)]
    tar_ids = {id(r) for r in in_tars}
    others = [r for r in records if id(r) not in tar_ids]
    failures: list[tuple[Record, str]] = []
    bar = tqdm(total=len(records), unit="img", desc="decoding", disable=not progress or len(records) < 2)
    # PIL decodes outside the GIL, so threads use every core on the one slow part of a check
    with bar, ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        if in_tars:
            from captionkit.data.stream import stream_tar_images

            def decode(item: tuple[Record, bytes | str]) -> str | None:
                if isinstance(item[1], str):
                    return item[1]
                data = io.BytesIO(item[1])
                data.name = str(item[0].image)  # what load_image's errors name
                return _decode_error(data, max_pixels)

            streamed = stream_tar_images(in_tars)
            pairs = ((item[0], error) for item, error in _zip_map(pool, decode, streamed))
            for record, error in pairs:
                bar.update(1)
                if error is not None:
                    failures.append((record, error))
        for record, error in zip(others, pool.map(lambda r: _decode_error(r.image, max_pixels), others)):
            bar.update(1)
            if error is not None:
                failures.append((record, error))
    return failures


def _zip_map(pool: ThreadPoolExecutor, fn: Any, items: Any, window: int = 64) -> Any:
    """(item, fn(item)) in order, at most `window` in flight: Executor.map would read the whole stream first."""
    from collections import deque

    pending: deque = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            head, future = pending.popleft()
            yield head, future.result()
    while pending:
        head, future = pending.popleft()
        yield head, future.result()


def check_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    decode_images: bool = True,
    max_pixels: int | None = None,
    examples: int = 10,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Read a dataset leniently and report everything `captionkit data check` prints, as one JSON-able dict.

    Numbers: shards (shard files read, sharded formats only) and corrupt_shards (cut short or with a corrupt
    member: the samples before it are used), images_total (distinct image ids with captions), images_found /
    images_missing (image file present or
    not), images_unreadable (present but not decodable; only when decode_images), captions, splits (ids per split
    file when the dataset has split lists, else records per split), images_in_no_split, bogus_keys.
    `problems` lists reader problems (file and line) plus one entry per unreadable image and one summary entry
    for missing images and for images in no split.
    """
    result = read_dataset(path, format, strict=False, **options)
    dataset, problems = result.dataset, list(result.problems)
    records = dataset.records
    found, missing = find_images(records)
    unreadable = []
    if decode_images:
        for record, error in _decode_all(found, max_pixels, progress):
            unreadable.append(record)
            problems.append(Problem("unreadable_image", str(record.image), None, error))
    if missing:
        folders = sorted({str(r.image_path.parent) for r in missing})
        problems.append(
            Problem(
                "missing_images",
                folders[0] if len(folders) == 1 else None,
                None,
                f"{len(missing)} of {len(records)} images are missing, e.g. "
                + ", ".join(r.image_path.name for r in missing[:5]),
            )
        )
    no_split = [r for r in records if r.split is None]
    if no_split:
        problems.append(
            Problem(
                "not_in_split",
                None,
                None,
                f"{len(no_split)} images are in no split, e.g. " + ", ".join(r.image_id for r in no_split[:5]),
            )
        )
    if result.split_lists is not None:
        splits = {s: len(result.split_lists.get(s, [])) for s in SPLITS}
    else:
        counts = Counter(r.split for r in records)
        splits = {s: counts.get(s, 0) for s in SPLITS}
    kinds = Counter(p.kind for p in problems)
    lengths = [len(word_tokenize(c)) for r in records for c in r.captions]
    problems.sort(key=lambda p: (p.file or "", p.line or 0))
    return {
        "path": str(Path(path).absolute()),
        "format": dataset.format,
        "files": [str(f) for f in dataset.files],
        "split_source": result.split_source,
        "shards": len(dataset.files) if dataset.format in SHARDED else None,
        "corrupt_shards": kinds.get("corrupt_shard", 0),
        "images_total": len(records),
        "images_found": len(found),
        "images_missing": len(missing),
        "images_unreadable": len(unreadable) if decode_images else None,
        "captions": sum(len(r.captions) for r in records),
        "splits": splits,
        "images_in_no_split": len(no_split),
        "images_found_per_split": {s: sum(1 for r in found if r.split == s) for s in SPLITS},
        "captions_per_image": {str(k): v for k, v in sorted(Counter(len(r.captions) for r in records).items())},
        "caption_words": _length_stats(lengths),
        "bogus_keys": kinds.get("bogus_key", 0),
        "empty_captions": kinds.get("empty_caption", 0),
        "duplicate_captions": kinds.get("duplicate_caption", 0),
        "missing_examples": [str(r.image) for r in missing[:examples]],
        "unreadable_examples": [str(r.image) for r in unreadable[:examples]],
        "problems": [p.to_dict() for p in problems],
    }
