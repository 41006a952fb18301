"""Flickr token files (Flickr8k, Flickr30k: `IMAGE#N<TAB>caption`) and the Kaggle Flickr8k `captions.txt` CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from captionkit.data.formats.common import (
    DEFAULT_SPLIT_FRACTIONS,
    CaptionCollector,
    ProblemLog,
    ReadResult,
    check_fractions,
    find_image_dir,
    find_split_files,
    hash_split,
    hash_split_source,
    looks_like_image_name,
    make_dataset,
    next_csv_row,
    read_split_lists,
    read_text,
    report_unlisted,
    split_lookup,
)
from captionkit.errors import DatasetError

TEXT_DIR_NAMES = ("Text", "Flickr8k_text", "flickr8k_text")
FLICKR8K_TOKEN = "Flickr8k.token.txt"
FLICKR8K_LEMMA = "Flickr8k.lemma.token.txt"
FLICKR30K_TOKEN = "results_20130124.token"
KAGGLE_CAPTIONS = "captions.txt"


def _first_file(directory: Path, candidates: Iterable[str]) -> Path | None:
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    return None


def find_flickr8k(directory: Path) -> Path | None:
    """`Text/Flickr8k.token.txt` (the seed layout `data/Flickr8k/{Images,Text}`), or the token file at the root."""
    return _first_file(directory, [f"{d}/{FLICKR8K_TOKEN}" for d in TEXT_DIR_NAMES] + [FLICKR8K_TOKEN])


def find_flickr30k(directory: Path) -> Path | None:
    return _first_file(
        directory, [FLICKR30K_TOKEN, f"Text/{FLICKR30K_TOKEN}", f"flickr30k/{FLICKR30K_TOKEN}", "results.token"]
    )


def find_kaggle(directory: Path) -> Path | None:
    return _first_file(directory, [KAGGLE_CAPTIONS])


def _dataset_root(caption_file: Path) -> Path:
    parent = caption_file.parent
    return parent.parent if parent.name in TEXT_DIR_NAMES else parent


def _assign_splits(
    problems: ProblemLog,
    collector: CaptionCollector,
    split_dirs: list[Path],
    split_seed: int,
    split_fractions: Iterable[float],
) -> tuple[dict[str, str], dict[str, list[str]] | None, str, list[Path]]:
    """Official split lists when any are found in `split_dirs`, else the documented hash split."""
    files = find_split_files(split_dirs)
    if files:
        lists = read_split_lists(files, problems)
        report_unlisted(lists, files, set(collector.captions), problems)
        source = "split files " + ", ".join(str(p) for p in files.values())
        return split_lookup(lists), lists, source, list(files.values())
    fractions = check_fractions(split_fractions)
    lookup = {i: hash_split(i, split_seed, fractions) for i in collector.captions}
    return lookup, None, hash_split_source(split_seed, fractions), []


def _images_dir(
    problems: ProblemLog, root: Path, roots: list[Path], image_dir: str | Path | None, caption_file: Path
) -> Path:
    found = find_image_dir(roots, image_dir)
    if found is None:
        found = root / "Images"
        problems.warn(
            "no_image_dir",
            caption_file,
            None,
            f"no image folder found beside the captions (looked for Images/, Flicker8k_Dataset/, "
            f"flickr30k-images/ in {', '.join(str(r) for r in roots)}); pass image_dir=...",
        )
    return found


def read_token_file(
    path: Path,
    problems: ProblemLog,
    *,
    fmt: str = "flickr8k",
    image_dir: str | Path | None = None,
    lemma: bool = False,
    split_dir: str | Path | None = None,
    split_seed: int = 0,
    split_fractions: Iterable[float] = DEFAULT_SPLIT_FRACTIONS,
) -> ReadResult:
    """A Flickr8k/Flickr30k token file: one `IMAGE#N<TAB>caption` per line.

    `lemma=True` reads the lemmatised `Flickr8k.lemma.token.txt` beside the given token file instead. Splits come
    from the official lists `Flickr_8k.{train,dev,test}Images.txt` beside the token file (or in `split_dir`);
    without them, from `hash_split` (seeded by `split_seed`). Keys that are not image file names (the real
    Flickr8k file has `2258277193_586949ec62.jpg.1`) are reported as `bogus_key` problems and skipped.
    """
    if lemma:
        path = path.with_name(FLICKR8K_LEMMA)
        if not path.is_file():
            raise DatasetError(f"{path}: lemma file not found (option lemma=True)")
    collector = CaptionCollector(problems)
    bogus: dict[str, list[int]] = {}
    for number, line in enumerate(read_text(path, problems).split("\n"), 1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image_id, hash_sign, caption_no = key.strip().rpartition("#")
        if not tab or not hash_sign or not caption_no.isdigit() or not image_id:
            problems.error("malformed_line", path, number, f"expected IMAGE#N<TAB>caption, got {line[:60]!r}")
            continue
        if not looks_like_image_name(image_id):
            bogus.setdefault(image_id, []).append(number)
            continue
        collector.add(image_id, caption, path, number)
    for image_id, lines in bogus.items():
        problems.warn(
            "bogus_key",
            path,
            lines[0],
            f"bogus image key {image_id!r} ({len(lines)} line(s)): not an image file name; skipped",
        )
    root = _dataset_root(path)
    images = _images_dir(problems, root, list(dict.fromkeys([path.parent, root])), image_dir, path)
    dirs = [Path(split_dir)] if split_dir is not None else [path.parent]
    lookup, lists, source, split_files = _assign_splits(problems, collector, dirs, split_seed, split_fractions)
    records = collector.records(lambda i: images / i, lookup.get, path)
    return ReadResult(make_dataset(records, root, fmt, [path, *split_files]), problems.problems, lists, source)


def read_kaggle_captions(
    path: Path,
    problems: ProblemLog,
    *,
    image_dir: str | Path | None = None,
    split_dir: str | Path | None = None,
    split_seed: int = 0,
    split_fractions: Iterable[float] = DEFAULT_SPLIT_FRACTIONS,
) -> ReadResult:
    """The Kaggle copy of Flickr8k: `captions.txt`, a CSV with header `image,caption`, one caption per row.

    Splits: the official Flickr8k lists when present (in `split_dir`, beside captions.txt, or in `Text/` or
    `Flickr8k_text/` beside it), else `hash_split(image_id, split_seed, split_fractions)`: a reproducible
    80/10/10 split by default (see `hash_split` for why it is per image rather than exact counts).
    """
    collector = CaptionCollector(problems)
    reader = csv.reader(io.StringIO(read_text(path, problems), newline=""))
    header = next_csv_row(reader, path, problems)
    if header is None or [h.strip().lower() for h in header] != ["image", "caption"]:
        raise DatasetError(
            f"{path}:1: expected the header 'image,caption' of the Kaggle Flickr8k captions.txt, "
            f"got {','.join(header or [])[:60]!r}; for other CSV files use format='csv'"
        )
    bogus: dict[str, list[int]] = {}
    while True:
        row = next_csv_row(reader, path, problems)
        if row is None:
            break
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            problems.error(
                "malformed_line", path, reader.line_num, f"expected 2 columns (image,caption), got {len(row)}"
            )
            continue
        image_id = row[0].strip()
        if not looks_like_image_name(image_id):
            bogus.setdefault(image_id, []).append(reader.line_num)
            continue
        collector.add(image_id, row[1], path, reader.line_num)
    for image_id, lines in bogus.items():
        problems.warn(
            "bogus_key",
            path,
            lines[0],
            f"bogus image name {image_id!r} ({len(lines)} row(s)): not an image file name; skipped",
        )
    root = path.parent
    images = _images_dir(problems, root, [root], image_dir, path)
    dirs = [Path(split_dir)] if split_dir is not None else [root] + [root / d for d in TEXT_DIR_NAMES]
    lookup, lists, source, split_files = _assign_splits(problems, collector, dirs, split_seed, split_fractions)
    records = collector.records(lambda i: images / i, lookup.get, path)
    return ReadResult(make_dataset(records, root, "kaggle", [path, *split_files]), problems.problems, lists, source)
