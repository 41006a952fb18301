"""Shard files: expanding a shard spec, listing what a shard holds, and reading one image out of it.

A sharded dataset is a list of container files: WebDataset tars in img2dataset's layout (KEY.jpg + KEY.txt +
optional KEY.json), parquet files, or the arrow files of a Hugging Face dataset. Every command processes it shard
by shard (`plan_shards`), which is how the work is split across processes and resumed.
"""

from __future__ import annotations

import os
import re
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionkit.data.records import Record, ShardImage
from captionkit.errors import DatasetError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
TABLE_SUFFIXES = (".parquet", ".arrow")
SHARD_SUFFIXES = TAR_SUFFIXES + TABLE_SUFFIXES
WDS_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif")  # img2dataset writes jpg (or png/webp if asked)
_TABLE_MEMBER = re.compile(r"^(?P<column>.+)\[(?P<row>\d+)\]$")
_OPEN_SHARDS = 8  # shards kept open per process for random reads


def shard_suffix(name: str) -> str:
    lower = name.lower()
    return next((s for s in SHARD_SUFFIXES if lower.endswith(s)), "")


def expand_shards(spec: str | os.PathLike) -> list[Path]:
    """The shard files a spec names, in order: a brace pattern (`data/cc/{00000..00099}.tar`), a list file (.txt,
    one shard path per line, relative to the list file), a directory (its *.tar / *.parquet / *.arrow files,
    sorted) or one shard file. A named shard that does not exist raises DatasetError."""
    import braceexpand  # a dependency of webdataset: the same expansion webdataset applies to its URLs

    text = str(spec)
    if "{" in text:
        shards = [Path(p) for p in braceexpand.braceexpand(text)]
        where = f"pattern {text}"
    else:
        path = Path(text)
        if path.is_dir():
            shards = sorted(p for p in path.iterdir() if p.is_file() and shard_suffix(p.name))
            if not shards:
                raise DatasetError(f"{path}: no shard files (*.tar, *.parquet, *.arrow) in this folder")
            return [p.absolute() for p in shards]
        if path.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
            shards = [(path.parent / ln) for ln in lines if ln and not ln.startswith("#")]
            where = f"list file {path}"
        else:
            shards, where = [path], str(path)
    if not shards:
        raise DatasetError(f"{where}: names no shard files")
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        raise DatasetError(f"{where}: {len(missing)} of {len(shards)} shard(s) do not exist, e.g. {missing[0]}")
    return [p.absolute() for p in shards]


def is_shard_list(path: Path) -> bool:
    """A .txt file whose first non-empty line names a shard file."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            first = next((ln.strip() for ln in f if ln.strip()), "")
    except OSError:
        return False
    return bool(shard_suffix(first))


def split_key(name: str) -> tuple[str, str]:
    """A tar member name -> (sample key, extension), as webdataset groups members into samples."""
    from webdataset.tariterators import base_plus_ext

    key, ext = base_plus_ext(name)
    return (key or name), (ext or "").lower()


@dataclass
class TarSample:
    """What a tar shard holds for one key: the image member's name and the caption/metadata members' contents."""

    key: str
    image: str | None = None  # member name, e.g. "000001.jpg"
    text: str | None = None
    meta: bytes | None = None


def list_tar(path: Path) -> tuple[list[TarSample], str | None]:
    """The samples of a tar shard in member order, reading only headers and the small .txt/.json members
    (tarfile seeks over image data in an uncompressed tar), plus why reading stopped early (None if it did not).

    Written with tarfile rather than webdataset because webdataset only streams every byte of a shard: a listing
    would read the whole corpus to learn its captions."""
    samples: dict[str, TarSample] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                key, ext = split_key(info.name)
                sample = samples.setdefault(key, TarSample(key))
                if ext in WDS_IMAGE_EXTS and sample.image is None:
                    sample.image = info.name
                elif ext == "txt":
                    sample.text = tar.extractfile(info).read().decode("utf-8", errors="replace")  # type: ignore[union-attr]
                elif ext == "json":
                    sample.meta = tar.extractfile(info).read()  # type: ignore[union-attr]
                tar.members = []  # keep memory flat on big shards (webdataset does the same)
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as exc:
        return list(samples.values()), f"{type(exc).__name__}: {exc}"
    return list(samples.values()), None


class _OpenShards:
    """Per process, the last few shards opened for random reads (a tar's member table, a table's image column):
    opening a shard per image would re-scan it every time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._open: OrderedDict[tuple[Path, str], Any] = OrderedDict()

    def get(self, key: tuple[Path, str], opener: Any) -> Any:
        with self._lock:
            if self._pid != os.getpid():  # a forked DataLoader worker: never share file offsets with the parent
                self._open, self._pid = OrderedDict(), os.getpid()
            if key in self._open:
                self._open.move_to_end(key)
                return self._open[key]
            value = opener()
            self._open[key] = value
            while len(self._open) > _OPEN_SHARDS:
                _, old = self._open.popitem(last=False)
                close = getattr(old[0] if isinstance(old, tuple) else old, "close", None)
                if close is not None:
                    close()
            return value


_SHARDS = _OpenShards()


def _open_tar(path: Path) -> tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]:
    tar = tarfile.open(path, "r:*")
    members = {}
    for info in tar:
        members[info.name] = info
    tar.members = []
    return tar, members


def _table_column(path: Path, column: str) -> Any:
    """One column of a parquet or arrow shard as a pyarrow ChunkedArray (arrow files are memory-mapped)."""
    if path.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=[column]).column(column)
    return _arrow_table(path).column(column)


def _arrow_table(path: Path) -> Any:
    """An arrow shard as a table whose buffers stay in the memory map (no copy: pages load when a row is read)."""
    import pyarrow as pa

    source = pa.memory_map(str(path))  # left open: the table's buffers point into it
    try:
        return pa.ipc.open_stream(source).read_all()  # the IPC stream format `datasets` writes
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source).read_all()


def read_shard_image(image: ShardImage) -> bytes:
    """The encoded bytes of an image inside a shard. Raises OSError naming it when it cannot be read."""
    lock = _READ_LOCK
    try:
        if image.shard.name.lower().endswith(TAR_SUFFIXES):
            with lock:  # one TarFile's file offset is shared by the threads of `data check`
                tar, members = _SHARDS.get((image.shard, ""), lambda: _open_tar(image.shard))
                info = members.get(image.member)
                handle = tar.extractfile(info) if info is not None else None
                if handle is None:
                    raise OSError(f"{image}: no such member in the tar shard")
                return handle.read()
        match = _TABLE_MEMBER.match(image.member)
        if match is None:
            raise OSError(f"{image}: not COLUMN[ROW]")
        column = _SHARDS.get((image.shard, match["column"]), lambda: _table_column(image.shard, match["column"]))
        value = column[int(match["row"])].as_py()
    except (tarfile.TarError, EOFError, KeyError, IndexError) as exc:
        raise OSError(f"{image}: cannot read ({type(exc).__name__}: {exc})") from exc
    return table_image_bytes(value, image.shard.parent, str(image))


_READ_LOCK = threading.Lock()


def table_image_bytes(value: Any, base: Path, where: str) -> bytes:
    """A table cell holding an image -> its bytes: raw bytes, a Hugging Face Image struct {"bytes", "path"}, or a
    path (relative to the table's folder)."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value:
        path = Path(value) if Path(value).is_absolute() else base / value
        try:
            return path.read_bytes()
        except OSError as exc:
            raise OSError(f"{where}: image file {path} cannot be read ({exc.strerror or exc})") from exc
    raise OSError(f"{where}: no image in this cell (got {type(value).__name__})")


@dataclass(frozen=True)
class InputShard:
    """One unit of distributed work: a shard file's records, or a fixed-size chunk of a folder dataset's images."""

    index: int
    name: str  # file-name safe: the shard's file name without suffix, or part-00003
    records: tuple[Record, ...]

    @property
    def digest(self) -> str:
        """16 hex digits naming exactly which images this shard holds: work done for another set is redone."""
        import hashlib

        return hashlib.sha256("\n".join(r.image_id for r in self.records).encode()).hexdigest()[:16]


def plan_shards(records: Sequence[Record], chunk_size: int = 1024) -> list[InputShard]:
    """Distinct images of `records` grouped into input shards, deterministically: records inside shard files go by
    shard file (in first-seen order), image files in chunks of `chunk_size` in record order."""
    if chunk_size < 1:
        raise DatasetError(f"shard size must be >= 1, got {chunk_size}")
    seen: set[str] = set()
    by_file: dict[Path, list[Record]] = {}
    loose: list[Record] = []
    for r in records:
        if r.image_id in seen:
            continue
        seen.add(r.image_id)
        (by_file.setdefault(r.image_path, []) if r.image_member is not None else loose).append(r)
    groups: list[tuple[str, list[Record]]] = []
    names: set[str] = set()
    for path, group in by_file.items():
        name = path.name[: -len(shard_suffix(path.name))] if shard_suffix(path.name) else path.stem
        while name in names:  # two shards of one name in different folders
            name += "_"
        names.add(name)
        groups.append((name, group))
    groups += [(f"part-{k // chunk_size:05d}", loose[k : k + chunk_size]) for k in range(0, len(loose), chunk_size)]
    return [InputShard(i, name, tuple(group)) for i, (name, group) in enumerate(groups)]


def rank_shards(shards: Sequence[InputShard], rank: int, world_size: int) -> list[InputShard]:
    """This process's shards: every world_size-th, starting at its rank (the same split on every rerun)."""
    return list(shards[rank::world_size])


def iter_table_rows(path: Path, columns: list[str], batch_rows: int = 4096) -> Iterator[dict[str, Any]]:
    """The rows of a parquet or arrow shard restricted to `columns`, streamed batch by batch."""
    if path.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)
        for batch in batches:
            yield from batch.to_pylist()
        return
    table = _arrow_table(path).select(columns)
    for batch in table.to_batches(max_chunksize=batch_rows):
        yield from batch.to_pylist()


def table_columns(path: Path) -> dict[str, str]:
    """{column name: arrow type as text} of a parquet or arrow shard, from its schema alone."""
    if path.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
    else:
        schema = _arrow_table(path).schema
    return {field.name: str(field.type) for field in schema}
