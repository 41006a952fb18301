"""Benchmark: what `captionkit evaluate` and `captionkit score` cost end to end with each metric set.

A tiny random ClipCap (the tiny-clipcap-mlp preset, saved as RUN/model) captions the 6 test images of a synthetic
dataset (60 images, seed 0); each command runs as a user runs it (a fresh `python -m captionkit.cli` process, so
Python and torch start-up are included), `--repeats` times, and the median wall time is reported.

    python benchmarks/metrics_timing.py [--repeats 3]

Prints a table and writes benchmarks/results/metrics_timing.json and metrics_timing.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import markdown_table

from captionkit.data.formats import load_dataset
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.models.base import build_model
from captionkit.models.model_dir import save_model_dir
from captionkit.registry import get_preset
from captionkit.rundir import find_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETS = {"default": "BLEU-1..4, METEOR, ROUGE-L, CIDEr", "fast": "BLEU-1..4, ROUGE-L, CIDEr"}


def prepare(tmp: Path) -> tuple[Path, Path, int]:
    """A tiny saved model and a synthetic dataset; returns (model dir, dataset, test images)."""
    import torch

    torch.manual_seed(0)
    data = write_synthetic_dataset(tmp / "synth", images=60, seed=0, size=64)
    preset = get_preset("tiny-clipcap-mlp")
    model = build_model(preset["model"])
    captions = [c for r in load_dataset(data).records for c in r.captions]
    tokenizer = type(model).build_tokenizer(model.config, captions)
    model_dir = save_model_dir(tmp / "run" / "model", model, tokenizer, preset["encoder"])
    return model_dir, data, len(load_dataset(data).split("test"))


def run_cli(args: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "captionkit.cli", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"captionkit {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="captionkit-metrics-timing-") as tmp:
        model_dir, data, images = prepare(Path(tmp))
        common = ["--dataset", str(data), "--split", "test", "--device", "cpu", "--max-new-tokens", "10"]
        for name, metrics in SETS.items():
            times = [run_cli(["evaluate", str(model_dir), *common, "--metrics", name]) for _ in range(args.repeats)]
            rows.append({"command": "evaluate", "metrics": f"{name} ({metrics})", "times": times})
        predictions = next(p for p in find_results(model_dir.parent)) / "predictions.json"
        for name, metrics in SETS.items():
            cmd = ["score", str(predictions), "--references", str(data), "--split", "test", "--metrics", name]
            times = [run_cli(cmd) for _ in range(args.repeats)]
            rows.append({"command": "score", "metrics": f"{name} ({metrics})", "times": times})
    for row in rows:
        row["median s"] = f"{statistics.median(row['times']):.1f}"
        row["runs s"] = ", ".join(f"{t:.1f}" for t in row["times"])
    header = ["command", "metrics", "median s", "runs s"]
    note = (
        f"`captionkit evaluate` / `score` as separate processes, tiny random ClipCap, {images} test images "
        f"(synthetic, 64 px), Java tokenizer, {args.repeats} runs each; {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; the machine was busy with other jobs (load average at start "
        f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}), so absolute times are noisy: compare rows of one run."
    )
    md = note + "\n\n" + markdown_table(header, rows, text_columns=2) + "\n"
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metrics_timing.md").write_text(md, encoding="utf-8")
    report = {"note": note, "images": images, "load_average": load, "rows": rows}
    (RESULTS / "metrics_timing.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
