"""Cold start of the CLI (issue 15): wall time of `captionkit caption MODEL one.jpg`, `captionkit --help` and
`captionkit models list` in fresh interpreters, and where the caption command's time goes (`python -X importtime`:
the largest imports, and the time after them).

    nice python benchmarks/cold_start.py [--model runs/demo/demo-clipcap-mlp/model] [--image IMG] [--repeats 5]

Writes benchmarks/results/cold_start.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tables import markdown_table

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGET_S = 4.0  # one-image caption with a demo model, the target
# the imports the caption command cannot avoid (the transformers seam builds GPT-2 from modeling_gpt2)
WATCHED = ["torch", "transformers", "transformers.models.gpt2.modeling_gpt2", "transformers.models.clip.modeling_clip"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "captionkit.cli", *args]


def wall(command: list[str], repeats: int) -> list[float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return times


def import_profile(command: list[str]) -> dict[str, float]:
    """Cumulative seconds of each watched module's import (where it was first imported) and of all imports."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], env=env, capture_output=True, text=True, check=True, cwd=REPO
    )
    total = time.perf_counter() - start
    cumulative: dict[str, float] = {}
    top_level = 0.0
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        micros, indent, name = int(m.group(1)), len(m.group(2)), m.group(3)
        if name in WATCHED and name not in cumulative:
            cumulative[name] = micros / 1e6
        if indent == 1:  # a module imported by the program itself, not by another module
            top_level += micros / 1e6
    return {**cumulative, "all imports": top_level, "whole command (with -X importtime)": total}


def run(args: argparse.Namespace) -> dict[str, Any]:
    commands = {
        "captionkit --help": cli("--help"),
        "captionkit models list": cli("models", "list"),
        f"captionkit caption {args.model_label} one.jpg": cli("caption", str(args.model), str(args.image)),
    }
    load_at_start = os.getloadavg()
    rows = []
    for name, command in commands.items():
        times = wall(command, args.repeats)
        rows.append(
            {
                "command": name,
                "runs": len(times),
                "median s": f"{statistics.median(times):.2f}",
                "min s": f"{min(times):.2f}",
                "max s": f"{max(times):.2f}",
            }
        )
        print(rows[-1], flush=True)
    caption_median = float(rows[-1]["median s"])
    profile = import_profile(commands[rows[-1]["command"]])
    return {
        "setup": {"python": sys.version.split()[0], "load_average_at_start": load_at_start},
        "results": rows,
        "caption_target_s": TARGET_S,
        "caption_met": caption_median <= TARGET_S,
        "caption_imports_s": profile,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["setup"]
    header = ["command", "runs", "median s", "min s", "max s"]
    profile = report["caption_imports_s"]
    lines = [
        f"Fresh interpreter per run, HF_HUB_OFFLINE=1 (Python {s['python']}; load average at start "
        f"{', '.join(f'{x:.1f}' for x in s['load_average_at_start'])}: the machine was shared with other jobs).",
        "",
        markdown_table(header, report["results"]),
        "",
        f"One-image caption target <= {report['caption_target_s']:.0f} s: "
        + ("met" if report["caption_met"] else "MISSED")
        + ". Where the caption command's time goes (`python -X importtime`, one run; cumulative seconds):",
        "",
        markdown_table(["import", "seconds"], [{"import": k, "seconds": f"{v:.2f}"} for k, v in profile.items()]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "demo" / "demo-clipcap-mlp" / "model")
    parser.add_argument("--image", type=Path, default=REPO / "runs" / "demo" / "data" / "Images" / "synth_000000.jpg")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.model_label = "runs/demo/demo-clipcap-mlp/model"
    report = run(args)
    table = markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold_start.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "cold_start.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
