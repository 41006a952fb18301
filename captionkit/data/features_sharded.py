"""Feature extraction split by input shard across processes (torchrun / accelerate launch), resumable per shard.

Input shard k (see `captionkit.data.shards.plan_shards`) becomes cache shard k, whichever process encodes it, so
one process and many write the same cache. While extracting, OUT/parts/ holds the settings (plan.json) and one
commit file per finished input shard (k.json: which images, ids, failures), written after its
shard-0000k.safetensors: a rerun skips input shards that have one for the same images. When every process is done,
rank 0 merges the parts into the documented layout of `captionkit.data.features` (index.json
{image_id: [shard, row]} + manifest.json, complete).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import Tensor

from captionkit.data.features import (
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    MANIFEST,
    FeatureCache,
    _exists,
    _run,
    _write_json,
    _write_shard,
    shard_name,
)
from captionkit.data.shards import InputShard, rank_shards
from captionkit.errors import FeatureCacheError
from captionkit.models.encoders import ImageEncoder
from captionkit.version import __version__

logger = logging.getLogger(__name__)

PARTS = "parts"
PLAN = "plan.json"


def _part(out: Path, index: int) -> Path:
    return out / PARTS / f"{index:05d}.json"


def _check_plan(out: Path, plan: dict[str, Any], write: bool) -> None:
    """Rank 0 writes the plan (or checks it against a previous run's); the other ranks check it. A different
    encoder, dataset, dtype or shard plan cannot be resumed into the same directory."""
    path = out / PARTS / PLAN
    if not path.is_file():
        if not write:
            raise FeatureCacheError(f"{path}: missing (rank 0 writes it first)")
        if (out / MANIFEST).is_file():
            raise FeatureCacheError(
                f"{out} holds a feature cache written without input shards (by training or "
                "an older captionkit); write to a new directory"
            )
        if out.exists() and any(out.iterdir()):
            raise FeatureCacheError(f"{out} exists and is not a feature cache; write to a new or empty directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, plan)
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    differ = [k for k in plan if old.get(k) != plan[k]]
    if differ:
        what = "; ".join(f"{k}: cache has {old.get(k)!r}, asked for {plan[k]!r}" for k in differ)
        raise FeatureCacheError(f"feature cache {out} does not match: {what}; delete {out} or write elsewhere")


def _is_done(out: Path, shard: InputShard) -> bool:
    part = _part(out, shard.index)
    return part.is_file() and json.loads(part.read_text(encoding="utf-8")).get("digest") == shard.digest


def extract_sharded(
    shards: Sequence[InputShard],
    encoder: ImageEncoder,
    out_dir: str | os.PathLike,
    *,
    dataset_fingerprint: str,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
    batch_size: int = 32,
    num_workers: int = 2,
    dtype: str = "float32",
    progress: bool = True,
) -> FeatureCache | None:
    """Encode this process's input shards (every world_size-th, from its rank) into cache shards of the same
    number, skipping those already committed; after `barrier()` rank 0 merges the cache. Returns the merged cache
    (on every rank, after a second barrier), or raises FeatureCacheError naming an input shard nobody finished."""
    if dtype not in DTYPES:
        raise FeatureCacheError(f"dtype {dtype!r} is not supported; valid: {', '.join(DTYPES)}")
    out = Path(out_dir)
    info = encoder.describe()
    plan = {
        "encoder": info["spec"],
        "dataset_fingerprint": dataset_fingerprint,
        "dtype": dtype,
        "feature_shape": list(encoder.feature_shape),
    }
    if rank == 0:
        _check_plan(out, plan, write=True)
    barrier()
    if rank != 0:
        _check_plan(out, plan, write=False)
    mine = [s for s in rank_shards(shards, rank, world_size) if not _is_done(out, s)]
    done = len(rank_shards(shards, rank, world_size)) - len(mine)
    if done:
        logger.info("rank %d: %d input shards already extracted, %d to go", rank, done, len(mine))
    if mine:
        chunks, missing = [], []
        for shard in mine:
            items = [(r.image_id, r.image) for r in shard.records]
            missing.append({i: f"missing file {img}" for i, img in items if not _exists(img)})
            chunks.append([(i, img) for i, img in items if i not in missing[-1]])

        def commit(k: int, ids: list[str], features: Tensor | None, failed: dict[str, str]) -> None:
            shard = mine[k]
            if ids:
                _write_shard(out / shard_name(shard.index), features.to(DTYPES[dtype]), ids)  # type: ignore[union-attr]
            _write_json(
                _part(out, shard.index),
                {
                    "shard": shard.index,
                    "name": shard.name,
                    "digest": shard.digest,
                    "ids": ids,
                    "failed": {**missing[k], **failed},
                },
                indent=None,
            )  # commit point

        was_training = encoder.training
        encoder.eval()
        try:
            _run(chunks, encoder, DTYPES[dtype], batch_size, num_workers, progress, commit)
        finally:
            encoder.train(was_training)
    barrier()
    if rank == 0:
        _merge(out, shards, info, plan)
    barrier()
    return FeatureCache.open(out)


def _merge(out: Path, shards: Sequence[InputShard], encoder_info: dict[str, Any], plan: dict[str, Any]) -> None:
    """index.json and manifest.json of the whole cache from the parts, in input-shard order."""
    index: dict[str, list[int]] = {}
    failed: dict[str, str] = {}
    listed = []
    for shard in shards:
        part = _part(out, shard.index)
        if not _is_done(out, shard):
            raise FeatureCacheError(
                f"{out}: input shard {shard.name} (#{shard.index}) was not extracted (a process "
                "stopped early?); re-run the same command to finish it"
            )
        data = json.loads(part.read_text(encoding="utf-8"))
        failed.update(data["failed"])
        if data["ids"]:
            index.update({image_id: [shard.index, row] for row, image_id in enumerate(data["ids"])})
            listed.append({"shard": shard.index, "file": shard_name(shard.index), "rows": len(data["ids"])})
    previous = out / MANIFEST
    created = (
        json.loads(previous.read_text(encoding="utf-8"))["created"]
        if previous.is_file()
        else datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": encoder_info,
        "dtype": plan["dtype"],
        "feature_shape": plan["feature_shape"],
        "dataset_fingerprint": plan["dataset_fingerprint"],
        "count": len(index),
        "shards": listed,
        "failed": failed,
        "complete": True,
        "input_shards": len(shards),
        "captionkit_version": __version__,
        "created": created,
    }
    _write_json(out / INDEX, index, indent=None)
    _write_json(out / MANIFEST, manifest)  # last: the commit point of the merged cache
    for stale in [*out.glob("shard-*.safetensors"), *(out / PARTS).glob("[0-9]*.json")]:
        number = int(stale.name.split(".")[0].rpartition("-")[2])
        if number >= len(shards):  # left by an earlier run over more input shards
            stale.unlink()
    if failed:
        examples = "; ".join(f"{i}: {reason}" for i, reason in list(failed.items())[:3])
        logger.warning(
            '%d images are missing or could not be read and were skipped (listed under "failed" in %s), e.g. %s',
            len(failed),
            out / MANIFEST,
            examples,
        )
