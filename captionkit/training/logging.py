"""What a run reports while it trains: a progress bar (loss, samples/s, ETA), RUN_DIR/log.jsonl (one JSON object
per event) and TensorBoard event files in RUN_DIR/tensorboard. Only the main process writes."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from captionkit.rundir import LOG as LOG_NAME
from captionkit.rundir import TENSORBOARD as TENSORBOARD_DIR
from captionkit.rundir import read_jsonl, read_log

__all__ = ["LOG_NAME", "TENSORBOARD_DIR", "RunLogger", "Throughput", "read_jsonl", "read_log", "truncate_jsonl"]


class RunLogger:
    """Writes nothing when `enabled` is False (non-main processes), so callers never branch on the rank."""

    def __init__(
        self, run_dir: Path, enabled: bool, total_steps: int, initial_step: int = 0, progress: bool = True
    ) -> None:
        self.enabled = enabled
        self.jsonl = None
        self.writer = None
        self.bar = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter  # imported here: it pulls in tensorboard

        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(run_dir / LOG_NAME, "a", encoding="utf-8")  # a resumed run appends
        # purge_step drops events a killed run wrote after its last checkpoint, so curves do not zig-zag
        purge = initial_step + 1 if initial_step else None
        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=purge)
        self.bar = tqdm(
            total=total_steps, initial=initial_step, desc="train", unit="step", dynamic_ncols=True, disable=not progress
        )

    def event(self, event: str, **fields: Any) -> None:
        """Append one line to log.jsonl: {"event", **fields, "time"}; non-finite floats become null."""
        if self.jsonl is None:
            return
        record = {"event": event, **{k: _json_value(v) for k, v in fields.items()}, "time": time.time()}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """TensorBoard scalars, tags like "train/loss", "dev/CIDEr"."""
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def progress(self, steps: int = 1, **postfix: Any) -> None:
        if self.bar is None:
            return
        if postfix:
            self.bar.set_postfix(
                {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()}, refresh=False
            )
        self.bar.update(steps)

    def message(self, text: str) -> None:
        """A line printed above the progress bar without breaking it (stderr, like the bar: stdout stays clean)."""
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text, file=sys.stderr)
        elif self.bar is not None:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
        self.bar = self.writer = self.jsonl = None


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite a JSON-lines log with only the events `keep` accepts: a resumed run drops what the interrupted one
    logged after its last checkpoint (about to be redone). Replaced atomically, so a second kill loses nothing."""
    if not path.is_file():
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in read_jsonl(path) if keep(e)), encoding="utf-8")
    os.replace(tmp, path)


class Throughput:
    """Samples per second of training time: pauses (evaluation, checkpoint writing) are left out."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self.mark = time.perf_counter()

    def resume(self) -> None:
        """Start timing again after a pause."""
        self.mark = time.perf_counter()

    def add(self, samples: int) -> None:
        now = time.perf_counter()
        self.seconds += now - self.mark
        self.mark = now
        self.samples += samples

    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def reset(self) -> None:
        self.samples, self.seconds = 0, 0.0
