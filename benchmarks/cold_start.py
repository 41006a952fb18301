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

from machine import load_state, state_at_start
from tables import markdown_table, write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGET_S = 4.0  # one-image caption with a demo model, the target


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "captionkit.cli", *args]


def wall(command: list[str], repeats: int, trees: dict[str, Path]) -> dict[str, list[float]]:
    """Seconds per run for each source tree (PYTHONPATH), the trees taking turns so they see the same load."""
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(repeats):
        for name, tree in trees.items():
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree)}
            start = time.perf_counter()
            # cwd too: `python -m` puts it first on sys.path, ahead of PYTHONPATH
            subprocess.run(command, env=env, capture_output=True, check=True, cwd=tree)
            times[name].append(time.perf_counter() - start)
    return times


PHASES = """
import json, sys, time
t = [time.perf_counter()]
import torch
t.append(time.perf_counter())
import transformers
t.append(time.perf_counter())
from transformers import GPT2LMHeadModel
t.append(time.perf_counter())
import captionkit
captioner = captionkit.load(sys.argv[1], device="cpu")
t.append(time.perf_counter())
captioner.encoder
t.append(time.perf_counter())
captioner.caption(sys.argv[2])
t.append(time.perf_counter())
names = ["import torch", "import transformers", "import transformers' GPT-2 (modeling_gpt2 and what it pulls in)",
         "captionkit.load (captionkit imports, build, weights, tokenizer)",
         "CLIP encoder (config + safetensors straight in)",
         "caption one image"]
print(json.dumps(dict(zip(names, [b - a for a, b in zip(t, t[1:])]))))
"""


def phase_profile(model: Path, image: Path) -> dict[str, float]:
    """Seconds of each step of a one-image caption in a fresh interpreter, in the order the command takes them.
    (`python -X importtime` does not see modeling_gpt2 itself: transformers' lazy loader executes it directly; its
    report names what it pulls in, e.g. transformers.activations -> torch.distributed.tensor, and
    transformers.masking_utils -> torch._dynamo.)"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PHASES, str(model), str(image)], env=env, capture_output=True, text=True, check=True
    )
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    return {**phases, "whole process (with the interpreter teardown that `caption` skips)": time.perf_counter() - start}


def import_profile(command: list[str], top: int = 8) -> dict[str, float]:
    """The largest imports that the program itself triggered (cumulative seconds, `python -X importtime`)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], env=env, capture_output=True, text=True, check=True, cwd=REPO
    )
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) == 1:  # imported by the program itself, not by another module
            found[m.group(3)] = int(m.group(1)) / 1e6
    return dict(sorted(found.items(), key=lambda kv: -kv[1])[:top])


def run(args: argparse.Namespace) -> dict[str, Any]:
    commands = {
        "captionkit --help": cli("--help"),
        "captionkit models list": cli("models", "list"),
        f"captionkit caption {args.model_label} one.jpg": cli("caption", str(args.model), str(args.image)),
    }
    start = state_at_start()
    trees = {"this tree": REPO, **({"baseline": args.baseline} if args.baseline else {})}
    rows = []
    for name, command in commands.items():
        for tree, times in wall(command, args.repeats, trees).items():
            rows.append(
                {
                    "command": name,
                    "code": tree if tree == "this tree" else f"baseline ({args.baseline_label})",
                    "runs": len(times),
                    "median s": f"{statistics.median(times):.2f}",
                    "min s": f"{min(times):.2f}",
                    "max s": f"{max(times):.2f}",
                }
            )
            print(rows[-1], flush=True)
    caption_median = float(
        next(r["median s"] for r in rows if r["command"].startswith("captionkit caption") and r["code"] == "this tree")
    )
    command = commands[rows[-1]["command"]]
    profile = {"phases": phase_profile(args.model, args.image), "largest imports": import_profile(command)}
    return {
        "setup": {"python": sys.version.split()[0], **start},
        "results": rows,
        "caption_target_s": TARGET_S,
        "caption_median_s": caption_median,
        "caption_met": caption_median <= TARGET_S,
        "caption_imports_s": profile,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["setup"]
    header = ["command", "code", "runs", "median s", "min s", "max s"]
    profile = report["caption_imports_s"]
    lines = [
        "Fresh interpreter per run, HF_HUB_OFFLINE=1, the trees taking turns "
        f"(Python {s['python']}; at start {load_state(s)}).",
        "",
        markdown_table(header, report["results"]),
        "",
        f"One-image caption target <= {report['caption_target_s']:.0f} s: "
        + ("met" if report["caption_met"] else f"MISSED by {report['caption_median_s'] - TARGET_S:.2f} s")
        + ". Where the caption command's time goes, step by step in a fresh interpreter (seconds):",
        "",
        markdown_table(["step", "seconds"], [{"step": k, "seconds": f"{v:.2f}"} for k, v in profile["phases"].items()]),
        "",
        "The largest imports the command triggers itself (`python -X importtime`, cumulative seconds):",
        "",
        markdown_table(
            ["module", "seconds"], [{"module": k, "seconds": f"{v:.2f}"} for k, v in profile["largest imports"].items()]
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "demo" / "demo-clipcap-mlp" / "model")
    parser.add_argument("--image", type=Path, default=REPO / "runs" / "demo" / "data" / "Images" / "synth_000000.jpg")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another captionkit checkout to time in turn (e.g. main)")
    parser.add_argument("--baseline-label", default="main", help="what the baseline is, for the table")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.model_label = "runs/demo/demo-clipcap-mlp/model"
    report = run(args)
    table = markdown(report)
    write_results(args.out, "cold_start", report, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
