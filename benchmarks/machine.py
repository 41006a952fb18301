"""What machine a benchmark ran on, in its results: torch, the CPU and the flags that decide bf16/int8 speed, load."""

from __future__ import annotations

import os
import platform
import subprocess
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


def machine(load_at_start: tuple[float, ...]) -> dict[str, Any]:
    """The setup fields every precision benchmark writes beside its own."""
    return {
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }


def load_state(load_average: tuple[float, ...] | list[float]) -> str:
    """`load average 0.3, 0.5, 0.9: idle` (1-minute load under half the CPUs) or `...: busy, shared with other
    jobs`, for a table's header line: absolute numbers from a busy machine are noisy, ratios from one run less so."""
    idle = load_average[0] < 0.5 * (os.cpu_count() or 1)
    return f"load average {', '.join(f'{x:.1f}' for x in load_average)}: " + (
        "idle" if idle else "busy, shared with other jobs"
    )
