"""The one record type every dataset reader produces, and the dataset that holds them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from captionkit.errors import DatasetError

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class ShardImage:
    """An image stored inside a shard file rather than as a file of its own: a WebDataset tar member
    (`member` = "KEY.jpg") or a cell of a parquet/arrow table (`member` = "COLUMN[ROW]").
    `captionkit.data.images.load_image` reads it; `str()` names it in messages as SHARD::MEMBER."""

    shard: Path
    member: str

    def __str__(self) -> str:
        return f"{self.shard}::{self.member}"


@dataclass(frozen=True)
class Record:
    """One image and its reference captions.

    `image_id` is the dataset's own id (the Flickr file name `1000268201_693b08cb0e.jpg`, a COCO integer as a string,
    a WebDataset key); `split` is "train", "dev", "test" or None (in no split list). An image inside a shard has
    `image_path` = the shard file and `image_member` = where in it (see ShardImage); `image` is what to load either way.
    """

    image_id: str
    image_path: Path
    captions: tuple[str, ...]
    split: str | None = None
    image_member: str | None = None

    @property
    def image(self) -> Path | ShardImage:
        """What `load_image` reads: the image file, or the image inside its shard."""
        return self.image_path if self.image_member is None else ShardImage(self.image_path, self.image_member)


@dataclass
class CaptionDataset:
    """Records plus where they came from. Readers never drop a record silently: missing images stay in `records`
    (see `exists`) so `data check` can report them and training can refuse them."""

    records: list[Record]
    root: Path
    format: str
    files: list[Path] = field(default_factory=list)  # the caption/split files read, for fingerprints and messages

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def split(self, name: str | Iterable[str]) -> list[Record]:
        """Records of one split ("train"/"dev"/"test") or of several; "val" is accepted for "dev"."""
        names = {name} if isinstance(name, str) else set(name)
        names = {"dev" if n == "val" else n for n in names}
        unknown = names - set(SPLITS) - {"all"}
        if unknown:
            raise DatasetError(f"unknown split(s) {sorted(unknown)}; valid: {list(SPLITS)} or 'all'")
        if "all" in names:
            return list(self.records)
        return [r for r in self.records if r.split in names]

    def with_images(self, records: list[Record] | None = None) -> list[Record]:
        """Only the records whose image file exists: never train on a caption whose image is missing."""
        return [r for r in (self.records if records is None else records) if r.image_path.is_file()]
