"""Feature-extraction forward pass by number format (issue 15): float32 vs bfloat16 for VGG16 fc2 and CLIP
ViT-B/32 (random weights, architecture only, 224 px), measured side by side in one run on the same pixels.

    nice python benchmarks/features_precision.py [--images 64] [--batch-size 16] [--threads N]

Each batch runs through the float32 and the bfloat16 encoder in turn (weights converted once, as `features
extract --compute-dtype bfloat16` and `captionkit.load(dtype="bfloat16")` do). Reports images/s, the speed-up and
the cosine similarity of the bfloat16 features to float32's. Writes benchmarks/results/features_precision.md/.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from features import build as load_bench_encoder
from machine import load_state, machine, state_at_start
from tables import markdown_table, write_results

from captionkit.models.precision import Precision, cast_encoder

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 1.8  # bfloat16 >= 1.8x float32, the target


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    start = state_at_start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.encoders.split(","):
            fp32 = load_bench_encoder(name, Path(tmp)).eval()
            bf16 = cast_encoder(fp32, Precision("bfloat16"), copy_first=True)
            pixels = torch.randn(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(0))
            seconds = {"float32": 0.0, "bfloat16": 0.0}
            cosines = []
            with torch.inference_mode():
                fp32(pixels[:2]), bf16(pixels[:2].bfloat16())  # warm-up (oneDNN primitives)
                for start in range(0, args.images, args.batch_size):
                    batch = pixels[start : start + args.batch_size]
                    t0 = time.perf_counter()
                    want = fp32(batch)
                    t1 = time.perf_counter()
                    got = bf16(batch.bfloat16()).float()
                    t2 = time.perf_counter()
                    seconds["float32"] += t1 - t0
                    seconds["bfloat16"] += t2 - t1
                    cosines.append(torch.nn.functional.cosine_similarity(got, want, dim=-1))
            speedup = seconds["float32"] / seconds["bfloat16"]
            cos = torch.cat(cosines)
            rows.append(
                {
                    "encoder": name,
                    "float32 img/s": round(args.images / seconds["float32"], 2),
                    "bfloat16 img/s": round(args.images / seconds["bfloat16"], 2),
                    "speed-up": f"{speedup:.2f}x",
                    "target >= 1.8x": "met" if speedup >= TARGET else f"MISSED by {TARGET - speedup:.2f}x",
                    "cosine bf16 vs fp32 (min / mean)": f"{cos.min():.4f} / {cos.mean():.4f}",
                    "speedup": speedup,
                }
            )
            print(rows[-1], flush=True)
            del fp32, bf16
    return {
        "setup": {
            "images": args.images,
            "batch_size": args.batch_size,
            "threads": args.threads,
            **machine(start),
        },
        "results": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["setup"]
    header = [
        "encoder",
        "float32 img/s",
        "bfloat16 img/s",
        "speed-up",
        "target >= 1.8x",
        "cosine bf16 vs fp32 (min / mean)",
    ]
    return (
        f"Forward pass only, {s['images']} random 224-px images in batches of {s['batch_size']}, random weights, "
        f"{s['threads']} threads (torch {s['torch']}, {s['cpu']}, flags {' '.join(s['cpu_flags'])}; "
        f"at start {load_state(s)}). float32 and bfloat16 run each batch in turn.\n\n"
        + markdown_table(header, report["results"])
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--encoders", default="vgg16:fc2,clip-vit-b32")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(args)
    table = markdown(report)
    write_results(args.out, "features_precision", report, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
