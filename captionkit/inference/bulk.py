"""Bulk captioning of a dataset by input shard, across processes, resumable: each process captions every N-th
shard into OUT/<shard>.jsonl, and the first process joins them, in input order, into OUT/captions.jsonl."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from captionkit.data.shards import InputShard, rank_shards
from captionkit.inference.files import caption_files

JOINED = "captions.jsonl"
UNREADABLE = "unreadable.json"


@dataclass
class BulkResult:
    captioned: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)  # key -> why
    shards_done_before: int = 0
    out: Path | None = None


def _shard_files(out: Path, shard: InputShard) -> tuple[Path, Path]:
    return out / f"{shard.name}.jsonl", out / f"{shard.name}.unreadable.json"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _commit(out: Path, shard: InputShard, rows: list[dict[str, Any]], unreadable: dict[str, str]) -> None:
    """The unreadable list first, then the captions: the .jsonl existing means the shard is done."""
    captions, failed = _shard_files(out, shard)
    _write_atomic(failed, json.dumps({"digest": shard.digest, "unreadable": unreadable}))
    _write_atomic(captions, "".join(json.dumps(row) + "\n" for row in rows))


def _is_done(out: Path, shard: InputShard) -> bool:
    captions, failed = _shard_files(out, shard)
    return (
        captions.is_file()
        and failed.is_file()
        and json.loads(failed.read_text(encoding="utf-8")).get("digest") == shard.digest
    )


def caption_shards(
    captioner: Any,
    shards: Sequence[InputShard],
    out_dir: str | os.PathLike,
    *,
    model: str,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
    batch_size: int = 16,
    progress: bool = True,
    **decoding: Any,
) -> BulkResult:
    """Caption this process's input shards not already done; after `barrier()` rank 0 writes OUT/captions.jsonl
    ({"key", "caption", "model", "decoding"} per image, in input order) and OUT/unreadable.json ({key: why})."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = captioner.decoding.replace(**decoding)
    from captionkit.config import to_dict

    settings_dict = to_dict(settings)
    mine = rank_shards(shards, rank, world_size)
    todo = [s for s in mine if not _is_done(out, s)]
    result = BulkResult(shards_done_before=len(mine) - len(todo), out=out / JOINED)
    bar = tqdm(
        total=sum(len(s.records) for s in todo), unit="img", desc=f"captioning (rank {rank})", disable=not progress
    )
    with bar:
        for shard in todo:
            rows, unreadable = [], {}
            records = list(shard.records)
            images = [r.image for r in records]
            for record, found in zip(records, caption_files(captioner, images, batch_size=batch_size, **decoding)):
                bar.update(1)
                if found.error is not None:
                    unreadable[record.image_id] = found.error
                else:
                    rows.append(
                        {"key": record.image_id, "caption": found.caption, "model": model, "decoding": settings_dict}
                    )
            _commit(out, shard, rows, unreadable)
    barrier()
    if rank == 0:
        _join(out, shards, result)
    barrier()
    return result


def _join(out: Path, shards: Sequence[InputShard], result: BulkResult) -> None:
    lines: list[str] = []
    for shard in shards:
        if not _is_done(out, shard):
            raise FileNotFoundError(
                f"{_shard_files(out, shard)[0]}: input shard {shard.name} was not captioned (a "
                "process stopped early?); re-run the same command to finish it"
            )
        captions, failed = _shard_files(out, shard)
        text = captions.read_text(encoding="utf-8")
        lines.append(text)
        result.captioned += text.count("\n")
        result.unreadable.update(json.loads(failed.read_text(encoding="utf-8"))["unreadable"])
    _write_atomic(out / UNREADABLE, json.dumps(result.unreadable, indent=1))
    _write_atomic(out / JOINED, "".join(lines))
