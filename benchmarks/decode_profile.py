"""Where decoding time goes in each number format (issue 15): torch.profiler over greedy decoding of GPT-2 124M
(random weights) + MLP mapper at batch 64, the self time of each operator grouped into matmuls, attention and the
rest, so a missed speed-up target is explained by measurement.

    nice python benchmarks/decode_profile.py [--images 64] [--tokens 10] [--threads 1]

Writes benchmarks/results/decode_profile.md and .json.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import torch
from decode import CLIP_DIM, GPT2_124M, PREFIX_LENGTH
from decode_precision import FORMATS
from machine import cpu_flags, cpu_name, load_state, state_at_start
from tables import markdown_table, write_results
from torch.profiler import ProfilerActivity, profile

from captionkit.decoding import generate
from captionkit.models.clipcap import ClipCapConfig, ClipCapModel
from captionkit.models.precision import apply_precision

RESULTS = Path(__file__).resolve().parent / "results"
GROUPS = {  # aten operator -> group; unlisted operators are "other"
    "matmul (Linear: mm, addmm, quantized linear)": ("aten::mm", "aten::addmm", "quantized::linear_dynamic"),
    "attention (scaled_dot_product_attention)": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
    "layer norm": ("aten::native_layer_norm",),
    "GELU and other elementwise": ("aten::mul", "aten::add", "aten::tanh", "aten::pow", "aten::gelu", "aten::add_"),
    "copies and casts (to, copy_, cat)": ("aten::copy_", "aten::cat", "aten::_to_copy", "aten::clone"),
    "softmax, top-k, argmax (scores)": ("aten::_log_softmax", "aten::topk", "aten::argmax", "aten::max"),
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = state_at_start()
    torch.set_num_threads(args.threads)
    config = ClipCapConfig(
        mapping="mlp", prefix_length=PREFIX_LENGTH, clip_dim=CLIP_DIM, gpt2="gpt2", gpt2_config=GPT2_124M
    )
    reference = ClipCapModel.build(config, pretrained=False).eval()
    features = torch.randn(args.images, CLIP_DIM, generator=torch.Generator().manual_seed(0))
    rows, raw = [], {}
    for fmt, precision in FORMATS.items():
        model = apply_precision(copy.deepcopy(reference), precision)
        generate(model, features[:2], -1, max_new_tokens=2)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            generate(model, features, -1, max_new_tokens=args.tokens)
        ops = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
        total = sum(ops.values())
        grouped = {g: sum(ops.get(op, 0.0) for op in names) for g, names in GROUPS.items()}
        grouped["other"] = total - sum(grouped.values())
        raw[fmt] = {
            "total_s": total,
            "groups_s": grouped,
            "top_ops_s": dict(sorted(ops.items(), key=lambda kv: -kv[1])[:12]),
        }
        for group, seconds in grouped.items():
            rows.append(
                {"format": fmt, "group": group, "seconds": f"{seconds:.2f}", "share": f"{100 * seconds / total:.0f}%"}
            )
        rows.append({"format": fmt, "group": "total (operator self time)", "seconds": f"{total:.2f}", "share": "100%"})
        print(fmt, raw[fmt]["groups_s"], flush=True)
        del model
    return {
        "setup": {
            "images": args.images,
            "tokens": args.tokens,
            "threads": args.threads,
            "torch": torch.__version__,
            "cpu": cpu_name(),
            "cpu_flags": cpu_flags(),
            **start,
        },
        "results": rows,
        "raw": raw,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["setup"]
    lines = [
        f"torch.profiler, greedy decoding of {s['images']} images x {s['tokens']} tokens in one batch, GPT-2 124M "
        f"architecture (random weights), {s['threads']} thread(s) (torch {s['torch']}, {s['cpu']}, flags "
        f"{' '.join(s['cpu_flags'])}; {load_state(s)}). Operator self time, grouped:",
        "",
        markdown_table(["format", "group", "seconds", "share"], report["results"], 2),
        "",
        "Largest operators per format (self seconds):",
        "",
    ]
    for fmt, data in report["raw"].items():
        top = ", ".join(f"{op} {t:.2f}" for op, t in list(data["top_ops_s"].items())[:8])
        lines.append(f"- {fmt}: {top}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(args)
    table = markdown(report)
    write_results(args.out, "decode_profile", report, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
