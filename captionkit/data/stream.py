"""Streaming the images of WebDataset tar shards with the webdataset library: each shard read once, front to back,
never unpacked to disk; a corrupt member or a shard cut short is counted and skipped, never fatal."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from captionkit.data.records import Record


class ErrorCounter:
    """A webdataset handler that records each error (shard and reason) and tells webdataset to go on."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, exc: Exception) -> bool:
        self.errors.append(f"{type(exc).__name__}: {' '.join(str(a) for a in exc.args[:2])}")
        return True


def stream_tar_images(
    records: Sequence[Record], errors: ErrorCounter | None = None
) -> Iterator[tuple[Record, bytes | str]]:
    """(record, image bytes) for each record whose image is a tar member, in record order grouped by shard; a
    member the stream never delivered (the shard is corrupt or cut short before it) gives (record, reason)."""
    from webdataset.tariterators import tar_file_expander, url_opener

    handler = errors if errors is not None else ErrorCounter()
    by_shard: dict[Path, dict[str, list[Record]]] = {}
    for r in records:
        by_shard.setdefault(r.image_path, {}).setdefault(str(r.image_member), []).append(r)
    for shard, wanted in by_shard.items():
        before = len(handler.errors)
        files = tar_file_expander(
            url_opener([{"url": str(shard)}], handler=handler),
            handler=handler,
            select_files=lambda name: name in wanted,
            eof_value=None,
        )
        for item in files:
            for record in wanted.pop(item["fname"], []):
                yield record, item["data"]
        reason = handler.errors[-1] if len(handler.errors) > before else "member not found"
        for pending in wanted.values():
            for record in pending:
                yield record, f"{shard}::{record.image_member}: not read from the shard ({reason})"
