"""What machine a benchmark ran on, in its results: torch, the CPU and the flags that decide bf16/int8 speed, load."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The flags that decide reduced-precision speed (AMX tiles, AVX-512 BF16 and VNNI)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_vnni", "avx512f")))


def cpu_busy_share(seconds: float = 1.0) -> float | None:
    """The share of all CPUs that something was using over the next `seconds` (from /proc/stat): unlike the load
    average, it does not lag behind a benchmark that has just finished. None where /proc/stat is missing."""

    def totals() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all jiffies, idle + iowait

    try:
        total0, idle0 = totals()
        time.sleep(seconds)
        total1, idle1 = totals()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def state_at_start() -> dict[str, Any]:
    """Taken before a benchmark's first measurement; `load_state` reads it back."""
    return {"load_average_at_start": os.getloadavg(), "cpu_busy_at_start": cpu_busy_share()}


def machine(start: dict[str, Any]) -> dict[str, Any]:
    """The setup fields every precision benchmark writes beside its own (`start`: `state_at_start()`)."""
    return {
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        **start,
        "load_average_at_end": os.getloadavg(),
    }


def load_state(setup: dict[str, Any]) -> str:
    """`load average 0.3, 0.5, 0.9, CPUs 2% busy: idle` for a table's header line, from `state_at_start()`'s fields:
    idle when other processes used under a quarter of the CPUs in the second before the benchmark started."""
    load = ", ".join(f"{x:.1f}" for x in setup["load_average_at_start"])
    busy = setup.get("cpu_busy_at_start")
    if busy is None:  # an older result: only the load average was taken
        return f"load average {load}"
    verdict = "idle" if busy < 0.25 else "busy, shared with other jobs"
    return f"load average {load}, CPUs {busy:.0%} busy just before: {verdict}"
