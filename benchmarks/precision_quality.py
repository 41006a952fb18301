"""Caption quality by number format (issue 15): every demo model's CIDEr and object_f1 on the demo test split in
float32, bfloat16 and int8 (dynamic), and the share of captions identical to float32's.

    nice python benchmarks/precision_quality.py [--demo runs/demo]

Needs a finished `make demo` (its runs/demo); evaluates with `evaluate_model` (greedy, the demo's decoding
defaults), writing each evaluation into a temporary folder (the runs' own eval files are left alone). Writes
benchmarks/results/precision_quality.md and .json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from machine import load_state, state_at_start
from tables import markdown_table, write_results

from captionkit.evaluation.evaluate import evaluate_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FORMATS = {"float32": {}, "bfloat16": {"dtype": "bfloat16"}, "int8": {"quantize": "int8"}}
BAR = 0.02  # the quality bar: CIDEr and object_f1 within 0.02 of float32


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    start = state_at_start()
    models = sorted(p.parent.parent.name for p in args.demo.glob("demo-*/model/config.json"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            reference: dict[str, Any] = {}
            for fmt, options in FORMATS.items():
                began = time.perf_counter()
                result = evaluate_model(
                    args.demo / name / "model",
                    args.demo / "data",
                    "test",
                    out_dir=Path(tmp) / name / fmt,
                    device="cpu",
                    metrics="CIDEr",
                    progress=False,
                    precision=options,
                )
                seconds = time.perf_counter() - began
                if fmt == "float32":
                    reference = {"captions": result.captions, **result.corpus}
                same = sum(result.captions[k] == v for k, v in reference["captions"].items()) / len(result.captions)
                d_cider = result.corpus["CIDEr"] - reference["CIDEr"]
                d_f1 = result.corpus["object_f1"] - reference["object_f1"]
                ok = abs(d_cider) <= BAR and abs(d_f1) <= BAR
                rows.append(
                    {
                        "model": name,
                        "format": fmt,
                        "images": len(result.captions),
                        "CIDEr": f"{result.corpus['CIDEr']:.3f}",
                        "delta CIDEr": f"{d_cider:+.3f}",
                        "object_f1": f"{result.corpus['object_f1']:.3f}",
                        "delta object_f1": f"{d_f1:+.3f}",
                        "within 0.02": "-" if fmt == "float32" else ("yes" if ok else "NO"),
                        "identical captions": f"{100 * same:.0f}%",
                        "eval s": f"{seconds:.1f}",
                    }
                )
                print(rows[-1], flush=True)
    return {
        "setup": {"demo": str(args.demo), "threads": args.threads, **start},
        "results": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    header = list(report["results"][0]) if report["results"] else []
    return (
        f"Demo test split, greedy decoding (the demo's defaults), CIDEr and object_f1 (`evaluate_model`), "
        f"{report['setup']['threads']} threads (at start {load_state(report['setup'])}; "
        "`eval s` includes the Java tokenizer's start).\n\n" + markdown_table(header, report["results"], 2) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=REPO / "runs" / "demo")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(args)
    table = markdown(report)
    write_results(args.out, "precision_quality", report, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
