"""Decoding speed: the original ClipCap decoding loop vs captionkit's batched, KV-cached decoding (issue 3).

GPT-2 with the 124M architecture (random weights) + MLP mapper (k=10), CLIP-sized (512-d) inputs, exactly
`--tokens` new tokens per caption (EOS disabled), fp32. Prints a Markdown table and writes
benchmarks/results/decode.json and decode.md.

    nice python benchmarks/decode.py [--images 64] [--baseline-images 4] [--threads N]

The baseline re-implements the original code's algorithm (rmokady/CLIP_prefix_caption, predict.py `generate2`
and `generate_beam`) here, only as a yardstick: one image at a time, GPT-2 re-run on the whole prefix + caption at
every step (no cache), LM-head logits for every position. It is slow, so it runs on a subset of the images and
its rate is reported per caption. Both sides use the same captionkit model object and weights.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tables import write_results

from captionkit.decoding import generate
from captionkit.models import hf
from captionkit.models.clipcap import ClipCapConfig, ClipCapModel

GPT2_124M = {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}
PREFIX_LENGTH, CLIP_DIM, BEAMS = 10, 512, 5
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------------ the original algorithm
@torch.no_grad()
def original_greedy(model: ClipCapModel, feature: torch.Tensor, tokens: int) -> list[int]:
    """The original `generate2` (greedy, top_p=0.8 filter, temperature 1) for one image, without its stop check."""
    generated = model.prefix(feature[None])  # (1, k, E)
    out: list[int] = []
    for _ in range(tokens):
        hidden, _ = hf.gpt2_hidden(model.gpt, generated)
        logits = hf.gpt2_logits(model.gpt, hidden)[:, -1, :]  # the original computes logits at every position
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        remove = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1) > 0.8
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits[:, sorted_indices[remove]] = -float("inf")
        next_token = torch.argmax(logits, -1).unsqueeze(0)  # (1, 1)
        out.append(int(next_token))
        generated = torch.cat((generated, hf.gpt2_embed(model.gpt, next_token)), dim=1)
    return out


@torch.no_grad()
def original_beam(model: ClipCapModel, feature: torch.Tensor, tokens: int, beam_size: int = BEAMS) -> list[int]:
    """The original `generate_beam` for one image (stop token never emitted here); returns the best beam."""
    stop_token_index = -1
    generated = model.prefix(feature[None])  # (1, k, E), expanded to the beams after the first step
    scores = seq = None
    seq_lengths = torch.ones(beam_size)
    is_stopped = torch.zeros(beam_size, dtype=torch.bool)
    for _ in range(tokens):
        hidden, _ = hf.gpt2_hidden(model.gpt, generated)
        logits = hf.gpt2_logits(model.gpt, hidden)[:, -1, :].softmax(-1).log()
        if scores is None:
            scores, next_tokens = logits.topk(beam_size, -1)
            generated = generated.expand(beam_size, *generated.shape[1:])
            next_tokens, scores = next_tokens.permute(1, 0), scores.squeeze(0)
            seq = next_tokens
        else:
            logits[is_stopped] = -float("inf")
            logits[is_stopped, 0] = 0
            scores_sum = scores[:, None] + logits
            seq_lengths[~is_stopped] += 1
            average = scores_sum / seq_lengths[:, None]
            average, next_tokens = average.view(-1).topk(beam_size, -1)
            source = next_tokens // scores_sum.shape[1]
            seq_lengths = seq_lengths[source]
            next_tokens = (next_tokens % scores_sum.shape[1]).unsqueeze(1)
            seq = torch.cat((seq[source], next_tokens), dim=1)
            generated = generated[source]
            scores = average * seq_lengths
            is_stopped = is_stopped[source]
        embed = hf.gpt2_embed(model.gpt, next_tokens.squeeze()).view(generated.shape[0], 1, -1)
        generated = torch.cat((generated, embed), dim=1)
        is_stopped = is_stopped + next_tokens.eq(stop_token_index).squeeze()
        if is_stopped.all():
            break
    order = (scores / seq_lengths).argsort(descending=True)
    return seq[order[0]].tolist()


# ------------------------------------------------------------------------------------------ FLOP accounting
def decoder_flops(model: ClipCapModel, images: int, tokens: int, beams: int, cached: bool) -> float:
    """Multiply-adds x 2 of a decode: weights (2 * params per position), attention (QK^T and AV), LM head.

    cached: the prefix runs once per image, each new token is one position per beam, the LM head runs on the
    newest position only. Uncached (the original): every step re-runs every position and its LM head.
    """
    cfg = model.gpt.config
    e, layers, vocab, k = cfg.n_embd, cfg.n_layer, cfg.vocab_size, PREFIX_LENGTH
    body = sum(p.numel() for n, p in model.gpt.transformer.named_parameters() if n.startswith("h."))
    mapper = sum(p.numel() for p in model.clip_project.parameters())
    head = vocab * e

    def attention(query_positions: int, context: int) -> float:
        return 4.0 * layers * query_positions * context * e  # QK^T + AV, 2 FLOPs per multiply-add

    per_image = 2.0 * mapper
    if cached:
        per_image += 2.0 * body * k + attention(k, k) / 2 + 2.0 * head  # prefix (causal: half the scores)
        for t in range(1, tokens):  # token t is computed from a step over position k + t - 1
            per_image += beams * (2.0 * (body + head) + attention(1, k + t))
    else:
        rows = 1
        for t in range(tokens):
            positions = k + t
            per_image += rows * (2.0 * (body + head) * positions + attention(positions, positions) / 2)
            rows = beams
    return per_image * images


def gemm_gflops(model: ClipCapModel, rows: int, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of torch.matmul on one decoding step's GEMMs at `rows` rows (all layers + LM head): the
    ceiling for a decoder that did nothing but its matrix products."""
    cfg = model.gpt.config
    e, v = cfg.n_embd, cfg.vocab_size
    shapes = [(e, 3 * e), (e, e), (e, 4 * e), (4 * e, e)] * cfg.n_layer + [(e, v)]
    weights = [torch.randn(a, b) for a, b in shapes]
    inputs = {a: torch.randn(rows, a) for a, _ in shapes}
    flops = sum(2.0 * rows * a * b for a, b in shapes)
    for w in weights:  # warm up
        torch.matmul(inputs[w.shape[0]], w)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for w in weights:
            torch.matmul(inputs[w.shape[0]], w)
        reps += 1
    return flops * reps / (time.perf_counter() - start) / 1e9


# ------------------------------------------------------------------------------------------ measurement
def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def row(name: str, method: str, images: int, tokens: int, seconds: float, flops: float) -> dict[str, Any]:
    return {
        "decoding": name,
        "method": method,
        "images": images,
        "seconds": round(seconds, 3),
        "captions_per_s": images / seconds,
        "tokens_per_s": images * tokens / seconds,
        "gflop": flops / 1e9,
        "gflops_per_s": flops / seconds / 1e9,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()
    config = ClipCapConfig(
        mapping="mlp", prefix_length=PREFIX_LENGTH, clip_dim=CLIP_DIM, gpt2="gpt2", gpt2_config=GPT2_124M
    )
    model = ClipCapModel.build(config, pretrained=False).eval()  # random weights, seeded
    features = torch.randn(args.images, CLIP_DIM, generator=torch.Generator().manual_seed(0))
    features = features / features.norm(dim=-1, keepdim=True)  # CLIP embeddings are compared on the unit sphere
    n_base, tokens = min(args.baseline_images, args.images), args.tokens

    def ours(num_beams: int, batch: slice) -> list[list[int]]:
        return generate(
            model, features[batch], -1, num_beams=num_beams, max_new_tokens=tokens, beam_scoring="clipcap"
        )  # EOS disabled: exactly `tokens` ids per caption

    generate(model, features[:2], -1, num_beams=2, max_new_tokens=2)  # warm-up (allocator, kernels)
    # the fp32 GEMM throughput the fractions refer to: the decoder's weight shapes at 256 rows, where GEMMs are
    # compute-bound; the ceilings at each decoder's own row count are reported beside it
    gemm = {"peak_256_rows": gemm_gflops(model, 256)}
    results, same = [], {}
    for name, beams, batch_size, baseline in (
        ("greedy", 1, args.batch_size, original_greedy),
        ("beam-5", BEAMS, args.beam_batch_size, original_beam),
    ):
        key = "greedy" if beams == 1 else "beam5"
        gemm[f"{key}_{batch_size * beams}_rows"] = gemm_gflops(model, batch_size * beams)
        # Baseline images are spread before, between and after the captionkit batches, so both sides see the
        # same machine load (neighbours' jobs come and go on a shared machine).
        starts = list(range(0, args.images, batch_size))
        slots: list[list[int]] = [[] for _ in range(len(starts) + 1)]
        for i in range(n_base):
            slots[round(i * len(starts) / max(n_base - 1, 1))].append(i)
        ids: list[list[int]] = []
        base_ids: dict[int, list[int]] = {}
        seconds = base_seconds = 0.0
        for slot, share in enumerate(slots):
            for i in share:
                base_ids[i], dt = timed(lambda: baseline(model, features[i], tokens))
                base_seconds += dt
            if slot < len(starts):
                out, dt = timed(lambda: ours(beams, slice(starts[slot], starts[slot] + batch_size)))
                ids, seconds = ids + out, seconds + dt
        assert all(len(x) == tokens for x in ids)
        mine = row(
            name,
            f"captionkit batched + KV cache (batch {batch_size})",
            args.images,
            tokens,
            seconds,
            decoder_flops(model, args.images, tokens, beams, cached=True),
        )
        base = row(
            name,
            "original ClipCap (1 image, no cache)",
            n_base,
            tokens,
            base_seconds,
            decoder_flops(model, n_base, tokens, beams, cached=False),
        )
        for r in (base, mine):
            r["gemm_fraction"] = r["gflops_per_s"] / gemm["peak_256_rows"]
            r["speedup"] = r["captions_per_s"] / base["captions_per_s"]
        same[key] = sum(base_ids[i] == ids[i] for i in range(n_base)) / n_base
        results += [base, mine]
        print(
            f"{name}: baseline {base['captions_per_s']:.3f} captions/s, captionkit "
            f"{mine['captions_per_s']:.3f} captions/s ({mine['speedup']:.1f}x)",
            flush=True,
        )
    speedups = {"greedy": results[1]["speedup"], "beam5": results[3]["speedup"]}
    return {
        "setup": {
            "model": "ClipCap MLP (k=10) + GPT-2 124M architecture, random weights, fp32",
            "parameters": sum(p.numel() for p in model.parameters()),
            "images": args.images,
            "baseline_images": n_base,
            "new_tokens": tokens,
            "eos": "disabled",
            "threads": args.threads,
            "batch_size": args.batch_size,
            "beam_batch_size": args.beam_batch_size,
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "gemm_gflops_per_s": gemm,
        "results": results,
        "speedup": speedups,
        "targets": {"greedy": 15.0, "beam5": 4.0},
        "targets_met": {"greedy": speedups["greedy"] >= 15.0, "beam5": speedups["beam5"] >= 4.0},
        "baseline_ids_identical_fraction": same,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["setup"]
    load = ", ".join(f"{x:.1f}" for x in s["load_average_at_start"])
    lines = [
        f"Decoding {s['new_tokens']} tokens per caption, {s['model']}, {s['threads']} threads "
        f"(torch {s['torch']}, {s['cpu_count']} CPUs, load average at start {load}); baseline on "
        f"{s['baseline_images']} images, captionkit on {s['images']}, interleaved.",
        "",
        "| decoding | method | images | seconds | captions/s | tokens/s | speed-up | GFLOP/s | % of GEMM |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['decoding']} | {r['method']} | {r['images']} | {r['seconds']:.1f} | "
            f"{r['captions_per_s']:.3f} | {r['tokens_per_s']:.1f} | {r['speedup']:.1f}x | "
            f"{r['gflops_per_s']:.0f} | {100 * r['gemm_fraction']:.0f}% |"
        )
    g = report["gemm_gflops_per_s"]
    at_rows = ", ".join(
        f"{v:.0f} at {k.split('_')[1]} rows ({k.split('_')[0]})" for k, v in g.items() if not k.startswith("peak")
    )
    lines += [
        "",
        f"% of GEMM: achieved GFLOP/s (FLOPs estimated as 2 x params x positions + attention) over fp32 "
        f"torch.matmul throughput on the decoder's weight shapes in the same run: {g['peak_256_rows']:.0f} "
        f"GFLOP/s at 256 rows ({at_rows}). Targets: greedy >= 15x "
        f"({'met' if report['targets_met']['greedy'] else 'MISSED'}), beam-5 >= 4x "
        f"({'met' if report['targets_met']['beam5'] else 'MISSED'}). Same ids as the baseline on its images: "
        f"greedy {100 * report['baseline_ids_identical_fraction']['greedy']:.0f}%, "
        f"beam-5 {100 * report['baseline_ids_identical_fraction']['beam5']:.0f}%.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images captionkit decodes (default 64)")
    parser.add_argument(
        "--baseline-images", type=int, default=4, help="images the slow original algorithm decodes (default 4)"
    )
    parser.add_argument("--tokens", type=int, default=30, help="new tokens per caption (default 30)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per greedy batch (default 64)")
    parser.add_argument("--beam-batch-size", type=int, default=16, help="images per beam-5 batch (default 16)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for decode.json and decode.md")
    args = parser.parse_args(argv)
    report = run(args)
    table = markdown(report)
    write_results(args.out, "decode", report, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
