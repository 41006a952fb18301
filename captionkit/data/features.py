"""Feature caches: every distinct image encoded once into safetensors shards, resumable, read row by row from disk.

Layout of a cache directory:
  shard-00000.safetensors  tensor "features" (rows, *feature_shape), float32 or float16; metadata "ids" (JSON list)
  index.json               {image_id: [shard number, row]}
  manifest.json            encoder (spec, preprocessing), dtype, feature_shape, dataset fingerprint, count, shards,
                           failed {image_id: reason}, complete, captionkit version
The manifest is written last after each shard, so it is the commit point: a shard or index entry it does not list
is redone on restart, and a listed shard is never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from captionkit.data.images import load_image
from captionkit.data.records import Record, ShardImage
from captionkit.errors import FeatureCacheError, ImageLoadError
from captionkit.models.encoders import ImageEncoder
from captionkit.models.precision import floating_dtype
from captionkit.version import __version__

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
OPEN_SHARDS = 64  # shard files a FeatureCache keeps open
INDEX = "index.json"
FORMAT = "captionkit-features"
FORMAT_VERSION = 1
DTYPES = {"float32": torch.float32, "float16": torch.float16}
_NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16}  # safetensors dtype codes -> numpy, for memory-mapping
# What a bad image file raises in PIL besides ImageLoadError: OSError (truncated/unidentified), SyntaxError (broken
# PNG chunks), EOFError, decompression bombs. Anything else is a bug and is not swallowed.
_IMAGE_ERRORS = (ImageLoadError, OSError, SyntaxError, EOFError, Image.DecompressionBombError)


def dataset_fingerprint(records: Iterable[Record]) -> str:
    """16 hex digits of SHA-256 over the sorted distinct image ids, each with its file size (-1 when missing).

    Features depend only on image bytes, so captions and splits are left out (one cache serves every split; pass
    all of a dataset's records); the size catches a re-encoded or replaced image at the cost of one stat per image.
    """
    sizes: dict[str, int] = {}
    for r in records:
        if r.image_id not in sizes:
            sizes[r.image_id] = r.image_path.stat().st_size if r.image_path.is_file() else -1
    digest = hashlib.sha256()
    for image_id in sorted(sizes):
        digest.update(f"{image_id}\t{sizes[image_id]}\n".encode())
    return digest.hexdigest()[:16]


class FeatureCache:
    """A finished (or partly finished) cache directory: opening costs two JSON reads; rows are read from disk when
    asked for, with positioned reads (pread) rather than memory maps, so a training epoch over a cache larger than
    memory keeps the process's resident memory flat: the pages read live in the kernel's page cache, which it
    evicts as needed, not in this process (a memory map grew resident memory by the whole cache, 1 GB for 1M rows
    of 512 float16: benchmarks/results/scale.md)."""

    def __init__(self, directory: Path, manifest: dict[str, Any], index: dict[str, list[int]]) -> None:
        self.directory = directory
        self.manifest = manifest
        self._index = index
        self._maps: OrderedDict[int, _ShardRows] = OrderedDict()  # the most recently read shards, open

    @classmethod
    def open(
        cls, directory: str | os.PathLike, expect_encoder: str | None = None, expect_fingerprint: str | None = None
    ) -> FeatureCache:
        """Open a cache; refuse it (FeatureCacheError naming what differs) if its encoder spec or dataset
        fingerprint is not the one expected."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        if manifest is None:
            raise FeatureCacheError(
                f"{directory} is not a feature cache (no {MANIFEST}); create one with "
                f"`captionkit features extract --dataset PATH --encoder SPEC --out {directory}`"
            )
        _check_matches(
            directory,
            manifest,
            expect_encoder,
            expect_fingerprint,
            hint="re-extract with `captionkit features extract ... --out NEW_DIR`",
        )
        return cls(directory, manifest, _read_index(directory, manifest))

    def __getstate__(self) -> dict[str, Any]:
        # shard files are reopened on first use in the receiving process
        return {**self.__dict__, "_maps": OrderedDict()}

    @property
    def ids(self) -> list[str]:
        return list(self._index)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["feature_shape"])

    @property
    def encoder_spec(self) -> str:
        return self.manifest["encoder"]["spec"]

    @property
    def failed(self) -> dict[str, str]:
        return dict(self.manifest["failed"])

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._index

    def missing(self, ids: Iterable[str]) -> list[str]:
        """The ids of `ids` this cache has no features for (failed or never extracted)."""
        return [i for i in ids if i not in self._index]

    def get(self, image_id: str, dtype: torch.dtype = torch.float32) -> Tensor:
        """(*feature_shape) features of one image."""
        shard, row = self._locate(image_id)
        return torch.from_numpy(self._map(shard).read([row])[0]).to(dtype)

    def get_many(self, ids: Sequence[str], dtype: torch.dtype = torch.float32) -> Tensor:
        """(N, *feature_shape) features of `ids`, in that order; one fancy-indexed read per shard."""
        out = torch.empty((len(ids), *self.feature_shape), dtype=dtype)
        by_shard: dict[int, tuple[list[int], list[int]]] = {}
        for position, image_id in enumerate(ids):
            shard, row = self._locate(image_id)
            positions, rows = by_shard.setdefault(shard, ([], []))
            positions.append(position)
            rows.append(row)
        for shard, (positions, rows) in by_shard.items():
            out[positions] = torch.from_numpy(self._map(shard).read(rows)).to(dtype)
        return out

    def _locate(self, image_id: str) -> tuple[int, int]:
        try:
            shard, row = self._index[image_id]
        except KeyError:
            reason = self.manifest["failed"].get(image_id)
            detail = f"its image could not be read: {reason}" if reason else "it was not extracted"
            raise FeatureCacheError(
                f"image {image_id!r} is not in feature cache {self.directory} ({detail}); "
                f"the cache holds {len(self)} images"
            ) from None
        return shard, row

    def _map(self, shard: int) -> _ShardRows:
        if shard in self._maps:
            self._maps.move_to_end(shard)
            return self._maps[shard]
        self._maps[shard] = rows = _ShardRows(self.directory / shard_name(shard))
        if len(self._maps) > OPEN_SHARDS:  # thousands of shards must not exhaust the open-file limit
            self._maps.popitem(last=False)
        return rows


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.safetensors"


class _ShardRows:
    """Rows of the "features" tensor of a safetensors shard, read with os.pread (no file offset is shared, so forked
    DataLoader workers may use one descriptor). Written by hand (an 8-byte little-endian header size, a JSON header,
    then raw row-major data) because safetensors' own readers return whole tensors, not rows."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))
            info = json.loads(f.read(header_size))["features"]
        self.dtype = np.dtype(_NUMPY_DTYPES[info["dtype"]])
        self.shape = tuple(info["shape"])
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.start = 8 + header_size + info["data_offsets"][0]
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, rows: Sequence[int]) -> np.ndarray:
        """(len(rows), *shape[1:]) array of those rows, in that order; runs of consecutive rows are one read."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        i = 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            size = (j - i) * self.row_bytes
            data = os.pread(self.fd, size, self.start + rows[i] * self.row_bytes)
            if len(data) != size or not 0 <= rows[i] or rows[j - 1] >= self.shape[0]:
                raise FeatureCacheError(
                    f"rows {rows[i]}..{rows[j - 1]} are outside shard {self.shape} (truncated "
                    "file?); re-extract the cache"
                )
            flat[i:j] = np.frombuffer(data, dtype=np.uint8).reshape(j - i, -1)
            i = j
        return out

    def __del__(self) -> None:
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise FeatureCacheError(
            f"{path} is not a captionkit feature-cache manifest (format {manifest.get('format')!r})"
        )
    return manifest


def _read_index(directory: Path, manifest: dict[str, Any]) -> dict[str, list[int]]:
    """The index restricted to shards the manifest lists (entries of a shard written after the last commit drop)."""
    path = directory / INDEX
    index = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    committed = {s["shard"] for s in manifest["shards"]}
    return {k: v for k, v in index.items() if v[0] in committed}


def _check_matches(
    directory: Path,
    manifest: dict[str, Any],
    encoder: str | None,
    fingerprint: str | None,
    hint: str,
    dtype: str | None = None,
) -> None:
    differences = []
    if encoder is not None and manifest["encoder"]["spec"] != encoder:
        differences.append(f"encoder: cache has {manifest['encoder']['spec']!r}, asked for {encoder!r}")
    if fingerprint is not None and manifest["dataset_fingerprint"] != fingerprint:
        differences.append(
            f"dataset fingerprint: cache has {manifest['dataset_fingerprint']!r}, asked for "
            f"{fingerprint!r} (different images or image files)"
        )
    if dtype is not None and manifest["dtype"] != dtype:
        differences.append(f"dtype: cache has {manifest['dtype']!r}, asked for {dtype!r}")
    if differences:
        raise FeatureCacheError(f"feature cache {directory} does not match: {'; '.join(differences)}; {hint}")


def _write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    """Write-to-temporary, fsync, rename: a reader (or a restart) sees the old file or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_shard(path: Path, features: Tensor, ids: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch()  # to learn the mode the user's umask gives: safetensors replaces it with owner-only (0600)
    mode = tmp.stat().st_mode & 0o777
    save_file({"features": features.contiguous()}, str(tmp), metadata={"ids": json.dumps(ids)})
    os.chmod(tmp, mode)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class _ImageFiles(Dataset):
    """(image id, image file or ShardImage) -> (id, pixels or None, failure reason or None); runs in DataLoader
    workers."""

    def __init__(self, items: list[tuple[str, Path | ShardImage]], preprocess: Callable[[Image.Image], Tensor]) -> None:
        self.items = items
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[str, Tensor | None, str | None]:
        image_id, path = self.items[i]
        try:
            return image_id, self.preprocess(load_image(path)), None
        except _IMAGE_ERRORS as exc:
            return image_id, None, f"{type(exc).__name__}: {exc}"


def _collate(batch: list[tuple[str, Tensor | None, str | None]]) -> tuple[list[str], Tensor | None, dict[str, str]]:
    """-> (ids of readable images, their (B, 3, H, W) pixels or None, {id: reason} of unreadable ones)."""
    ok = [(i, px) for i, px, _ in batch if px is not None]
    failed = {i: reason for i, px, reason in batch if px is None}
    return [i for i, _ in ok], (torch.stack([px for _, px in ok]) if ok else None), failed


class CacheWriter:
    """Appends shards to a cache directory, new or resumed; each `commit` is atomic (shard, index, then manifest).

    Resuming requires the same encoder spec, dataset fingerprint and dtype (else FeatureCacheError naming each
    difference); a directory holding anything but a cache is refused.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        encoder_info: dict[str, Any],
        feature_shape: Sequence[int],
        dataset_fingerprint: str,
        dtype: str = "float32",
    ) -> None:
        if dtype not in DTYPES:
            raise FeatureCacheError(f"dtype {dtype!r} is not supported; valid: {', '.join(DTYPES)}")
        self.out = Path(out_dir)
        self.dtype = DTYPES[dtype]
        manifest = _read_manifest(self.out)
        if manifest is None:
            if self.out.exists() and any(self.out.iterdir()):
                raise FeatureCacheError(
                    f"{self.out} exists and is not a feature cache (no {MANIFEST}); write to a new or empty directory"
                )
            self.out.mkdir(parents=True, exist_ok=True)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "encoder": encoder_info,
                "dtype": dtype,
                "feature_shape": list(feature_shape),
                "dataset_fingerprint": dataset_fingerprint,
                "count": 0,
                "shards": [],
                "failed": {},
                "complete": False,
                "captionkit_version": __version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        else:
            _check_matches(
                self.out,
                manifest,
                encoder_info["spec"],
                dataset_fingerprint,
                dtype=dtype,
                hint=f"delete {self.out} or write elsewhere",
            )
        manifest["complete"] = False
        _write_json(self.out / MANIFEST, manifest)
        self.manifest = manifest
        self.index = _read_index(self.out, manifest)
        self._next = max((s["shard"] for s in manifest["shards"]), default=-1) + 1

    def is_done(self, image_id: str) -> bool:
        """In a committed shard, or recorded as unreadable."""
        return image_id in self.index or image_id in self.manifest["failed"]

    def commit(self, ids: list[str], features: Tensor | None, failed: dict[str, str]) -> Path | None:
        """Commit one shard: `features` (len(ids), *feature_shape) rows of `ids`, plus the failures met on the way.
        Returns the shard file, or None when no image of it was readable (then only the failures are recorded)."""
        path = None
        if ids:
            expected = (len(ids), *self.manifest["feature_shape"])
            if features is None or tuple(features.shape) != expected:
                raise ValueError(
                    f"shard features must have shape {expected}, got "
                    f"{None if features is None else tuple(features.shape)}"
                )
            path = self.out / shard_name(self._next)
            _write_shard(path, features.to(self.dtype), ids)
            self.index.update({image_id: [self._next, row] for row, image_id in enumerate(ids)})
            self.manifest["shards"].append({"shard": self._next, "file": path.name, "rows": len(ids)})
            _write_json(self.out / INDEX, self.index, indent=None)  # compact: one entry per image
            self._next += 1
        self.manifest["failed"].update(failed)
        self.manifest["count"] = len(self.index)
        _write_json(self.out / MANIFEST, self.manifest)  # last: the commit point
        return path

    def finish(self) -> FeatureCache:
        self.manifest["complete"] = True
        _write_json(self.out / MANIFEST, self.manifest)
        return FeatureCache(self.out, self.manifest, self.index)


def extract_features(
    records: Iterable[Record],
    encoder: ImageEncoder,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    num_workers: int = 2,
    shard_size: int = 1024,
    dataset_fingerprint: str,
    dtype: str = "float32",
    progress: bool = True,
    on_shard: Callable[[Path], None] | None = None,
) -> FeatureCache:
    """Encode each distinct image of `records` once into a cache at `out_dir` and return it opened.

    Images are decoded and preprocessed in `num_workers` DataLoader workers while the encoder runs batches on its
    device (in eval mode, restored afterwards). A cache already at `out_dir` for the same encoder spec, fingerprint
    and dtype is resumed: images of its committed shards, or recorded as failed, are skipped. Unreadable images are
    skipped, recorded in the manifest's "failed" and reported in one warning. `on_shard(path)` is called after each
    shard file is committed.
    """
    writer = CacheWriter(out_dir, encoder.describe(), encoder.feature_shape, dataset_fingerprint, dtype)
    images: dict[str, Path | ShardImage] = {}
    for r in records:  # one entry per image however many captions (or duplicate records) it has
        images.setdefault(r.image_id, r.image)
    todo = [(i, p) for i, p in images.items() if not writer.is_done(i)]
    if len(todo) < len(images):
        logger.info(
            "feature cache %s: %d of %d images already done, %d to go",
            writer.out,
            len(images) - len(todo),
            len(images),
            len(todo),
        )
    # Missing files are recorded up front rather than sent through the workers, where (in a partly downloaded
    # dataset) they would leave most batches nearly empty.
    failed = {i: f"missing file {p}" for i, p in todo if not _exists(p)}
    if failed:
        writer.commit([], None, failed)
        todo = [(i, p) for i, p in todo if i not in failed]
    if todo:
        was_training = encoder.training
        encoder.eval()

        def commit(chunk: int, ids: list[str], features: Tensor | None, chunk_failed: dict[str, str]) -> None:
            path = writer.commit(ids, features, chunk_failed)
            if path is not None and on_shard is not None:
                on_shard(path)

        chunks = [todo[s : s + shard_size] for s in range(0, len(todo), shard_size)]
        try:
            failed.update(_run(chunks, encoder, writer.dtype, batch_size, num_workers, progress, commit))
        finally:
            encoder.train(was_training)
    if failed:
        examples = "; ".join(f"{i}: {reason}" for i, reason in list(failed.items())[:3])
        logger.warning(
            '%d of %d images are missing or could not be read and were skipped (listed under "failed" in %s), e.g. %s',
            len(failed),
            len(images),
            writer.out / MANIFEST,
            examples,
        )
    return writer.finish()


def _exists(image: Path | ShardImage) -> bool:
    return (image.shard if isinstance(image, ShardImage) else image).is_file()


Commit = Callable[[int, list[str], "Tensor | None", dict[str, str]], None]


def _run(
    chunks: list[list[tuple[str, Path | ShardImage]]],
    encoder: ImageEncoder,
    dtype: torch.dtype,
    batch_size: int,
    num_workers: int,
    progress: bool,
    commit: Commit,
) -> dict[str, str]:
    """Encode the images of each chunk; batches never straddle two chunks, so `commit(chunk number, ids,
    (len(ids), *shape) features or None, {id: reason})` runs as soon as a chunk's last batch lands."""
    device = next(encoder.parameters()).device
    compute_dtype = floating_dtype(encoder)  # float32, or bfloat16/float16 for an encoder cast by cast_encoder
    todo = [item for chunk in chunks for item in chunk]
    chunk_sizes = [len(chunk) for chunk in chunks]
    batches, start = [], 0
    for size in chunk_sizes:
        batches += [list(range(start + b, start + min(b + batch_size, size))) for b in range(0, size, batch_size)]
        start += size
    loader = DataLoader(
        _ImageFiles(todo, encoder.preprocess),
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if num_workers else None,
    )
    pending = [(k, size) for k, size in enumerate(chunk_sizes) if size]
    for k, size in enumerate(chunk_sizes):
        if not size:
            commit(k, [], None, {})
    chunk, size = pending.pop(0) if pending else (0, 0)
    seen = 0
    ids: list[str] = []
    rows: list[Tensor] = []
    failed: dict[str, str] = {}  # this chunk's
    failed_all: dict[str, str] = {}
    bar = tqdm(total=len(todo), unit="img", desc="features", disable=not progress, smoothing=0.1)
    with bar, torch.inference_mode():
        for batch_ids, pixels, batch_failed in loader:
            if pixels is not None:
                pixels = pixels.to(device, dtype=compute_dtype, non_blocking=True)  # the encoder's own dtype
                rows.append(encoder(pixels).to(dtype).cpu())  # (B, *shape)
                ids += batch_ids
            failed.update(batch_failed)
            seen += len(batch_ids) + len(batch_failed)
            bar.update(len(batch_ids) + len(batch_failed))
            if batch_failed:
                failed_all.update(batch_failed)
                bar.set_postfix(failed=len(failed_all))
            if seen == size:
                commit(chunk, ids, torch.cat(rows) if rows else None, failed)
                ids, rows, failed, seen = [], [], {}, 0
                chunk, size = pending.pop(0) if pending else (0, 0)
    return failed_all
