"""Pieces every reader shares: problem collection (strict/lenient), text decoding, captions, splits, image dirs."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from captionkit.data.records import SPLITS, CaptionDataset, Record
from captionkit.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# Names of the image folder in the layouts people actually have, in the order they are tried.
IMAGE_DIR_NAMES = ("Images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images", "flickr30k_images", "images")
# Split names seen in the wild -> captionkit's names; "restval" is resolved by the Karpathy reader's option.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "val": "dev",
    "valid": "dev",
    "validation": "dev",
    "test": "test",
    "testing": "test",
}
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset; `line` is 1-based, None when the problem is not about one line."""

    kind: str  # malformed_line, bad_encoding, bogus_key, empty_caption, duplicate_caption, missing_images, ...
    file: str | None
    line: int | None
    detail: str

    def __str__(self) -> str:
        where = self.file or "<dataset>"
        return f"{where}:{self.line}: {self.detail}" if self.line is not None else f"{where}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProblemLog:
    """Collects problems while a reader runs.

    `error()` is for malformed input (a line that cannot be parsed): strict mode raises DatasetError at once,
    lenient mode (`data check`) records it and the reader skips that line. `warn()` is for input that is
    well-formed but suspect (the bogus Flickr8k key, empty or duplicate captions): always recorded, never raised,
    so a real dataset with a known quirk still loads.
    """

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.problems: list[Problem] = []

    def error(self, kind: str, file: Path | str | None, line: int | None, detail: str) -> None:
        problem = Problem(kind, None if file is None else str(file), line, detail)
        if self.strict:
            raise DatasetError(f"{problem} (run `captionkit data check` to list every problem)")
        self.problems.append(problem)

    def warn(self, kind: str, file: Path | str | None, line: int | None, detail: str) -> None:
        self.problems.append(Problem(kind, None if file is None else str(file), line, detail))


@dataclass
class ReadResult:
    """What a reader returns: the dataset, the problems it found, and where the splits came from."""

    dataset: CaptionDataset
    problems: list[Problem] = field(default_factory=list)
    # ids listed per split file (official lists), or None when splits came from the caption file or a hash
    split_lists: dict[str, list[str]] | None = None
    split_source: str = ""


def read_text(path: Path, problems: ProblemLog) -> str:
    """The file as text: UTF-8 (optional BOM), CRLF and lone CR turned into LF. Lines that are not UTF-8 are
    reported with their line number and, in lenient mode, blanked so every other line keeps its number."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        try:
            raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            problems.error(
                "bad_encoding",
                path,
                number,
                f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); re-save the file as UTF-8",
            )
            lines[number - 1] = b""
    return b"\n".join(lines).decode("utf-8-sig")


def looks_like_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


class CaptionCollector:
    """Captions grouped by image id in first-seen order; reports empty and duplicate captions with their line."""

    def __init__(self, problems: ProblemLog) -> None:
        self.problems = problems
        self.captions: dict[str, list[str]] = {}
        self.paths: dict[str, Path] = {}

    def add(
        self, image_id: str, caption: str, file: Path, line: int | None, image_path: Path | None = None, where: str = ""
    ) -> None:
        caption = caption.strip()
        existing = self.captions.setdefault(image_id, [])
        if image_path is not None:
            self.paths.setdefault(image_id, image_path)
        if not caption:
            self.problems.warn("empty_caption", file, line, f"{where}empty caption for {image_id} (skipped)")
        elif caption in existing:
            self.problems.warn("duplicate_caption", file, line, f"{where}caption repeated for {image_id}: {caption!r}")
            existing.append(caption)
        else:
            existing.append(caption)

    def records(
        self, image_path: Callable[[str], Path], split_of: Callable[[str], str | None], file: Path
    ) -> list[Record]:
        """Records of every image with at least one caption; `image_path(id)` and `split_of(id)` fill the rest."""
        out, empty = [], []
        for image_id, captions in self.captions.items():
            if not captions:
                empty.append(image_id)
                continue
            path = self.paths.get(image_id) or image_path(image_id)
            out.append(Record(image_id, path, tuple(captions), split_of(image_id)))
        if empty:
            self.problems.warn(
                "no_captions",
                file,
                None,
                f"{len(empty)} image(s) have no non-empty caption and were left out, e.g. " + ", ".join(empty[:5]),
            )
        return out


def normalize_split(value: Any, restval: str | None = "train") -> str | None:
    """A split name from a file ("val", "VALIDATION", "restval", "") -> "train"/"dev"/"test"/None.

    Raises KeyError for a name that is none of these (the caller reports it with its location)."""
    if value is None:
        return None
    name = str(value).strip().lower()
    if name in ("", "none", "null"):
        return None
    if name == "restval":
        return restval
    return SPLIT_ALIASES[name]


def check_restval(restval: str | None) -> str | None:
    if restval is not None and restval not in SPLITS:
        raise DatasetError(f"option restval={restval!r}: expected one of {list(SPLITS)} or None")
    return restval


def hash_split(image_id: str, seed: int = 0, fractions: Iterable[float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """The reproducible fallback split when a dataset has no split lists.

    An image goes to train/dev/test by where sha256(f"{seed}:{image_id}") falls in [0, 1) against the cumulative
    `fractions` (default 80/10/10). Each image's split depends only on its own id and the seed, so adding or
    removing images never moves another image between splits (no test image leaks into train after an update);
    split sizes are therefore proportional only on average.
    """
    fractions = check_fractions(fractions)
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < fractions[0]:
        return "train"
    return "dev" if u < fractions[0] + fractions[1] else "test"


def check_fractions(fractions: Any) -> tuple[float, float, float]:
    """The split_fractions option as (train, dev, test), or DatasetError saying what is expected."""
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or any(not 0 <= f <= 1 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise DatasetError(
            f"option split_fractions={fractions!r}: expected three numbers in [0, 1] summing to 1 "
            "(train, dev, test), e.g. [0.8, 0.1, 0.1]"
        )
    return values  # type: ignore[return-value]


def hash_split_source(seed: int, fractions: Iterable[float]) -> str:
    f = check_fractions(fractions)
    return f"hash of image id (seed {seed}, train/dev/test {f[0]:g}/{f[1]:g}/{f[2]:g})"


FLICKR8K_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


def find_split_files(dirs: Iterable[Path]) -> dict[str, Path]:
    """The official Flickr8k split lists in the first of `dirs` that has any of them."""
    for d in dirs:
        found = {s: d / name for s, name in FLICKR8K_SPLIT_FILES.items() if (d / name).is_file()}
        if found:
            return found
    return {}


def read_split_lists(files: dict[str, Path], problems: ProblemLog) -> dict[str, list[str]]:
    """Image ids per split file (one file name per line); an id in two lists is reported, the first list wins."""
    lists: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for split, path in files.items():
        ids = lists.setdefault(split, [])
        for number, line in enumerate(read_text(path, problems).split("\n"), 1):
            image_id = line.strip()
            if not image_id:
                continue
            if image_id in seen:
                problems.warn("split_overlap", path, number, f"{image_id} is already in the {seen[image_id]} split")
                continue
            seen[image_id] = split
            ids.append(image_id)
    return lists


def split_lookup(lists: dict[str, list[str]]) -> dict[str, str]:
    return {image_id: split for split, ids in lists.items() for image_id in ids}


def report_unlisted(lists: dict[str, list[str]], files: dict[str, Path], known: set[str], problems: ProblemLog) -> None:
    """Split-list ids that have no captions (a split list from another dataset version, a typo)."""
    for split, ids in lists.items():
        unknown = [i for i in ids if i not in known]
        if unknown:
            problems.warn(
                "split_unknown_id",
                files[split],
                None,
                f"{len(unknown)} id(s) in the {split} list have no captions, e.g. {', '.join(unknown[:5])}",
            )


def find_image_dir(roots: Iterable[Path], image_dir: str | Path | None) -> Path | None:
    """The `image_dir` option if given, else the first conventional image folder under one of `roots`."""
    if image_dir is not None:
        return Path(image_dir)
    for root in roots:
        for name in IMAGE_DIR_NAMES:
            if (root / name).is_dir():
                return root / name
    return None


def make_dataset(records: list[Record], root: Path, fmt: str, files: list[Path]) -> CaptionDataset:
    if not records:
        raise DatasetError(f"{files[0] if files else root}: no captions found; is this a {fmt} file?")
    return CaptionDataset(records=records, root=root, format=fmt, files=files)


def next_csv_row(reader: Any, path: Path, problems: ProblemLog) -> list[str] | None:
    """The next CSV row, or None at the end; a row the csv module rejects is reported and skipped."""
    while True:
        try:
            return next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            problems.error("malformed_line", path, reader.line_num, f"unreadable CSV row ({exc})")
