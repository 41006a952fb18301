"""Training-step speed by number format (issue 15): a ClipCap-MLP step on the demo preset (3-layer GPT-2, fine-tuned,
batch 64, 40-token captions) in float32 vs bfloat16 autocast through accelerate (`train.mixed_precision=bf16`),
side by side in one run.

    nice python benchmarks/train_step.py [--steps 20] [--threads N]

The architecture and tokenizer are the demo's (runs/demo/demo-clipcap-mlp/model when present, else the
demo-clipcap-mlp preset with a BPE trained on synthetic captions); features and captions are random. Two copies of
the model start from the same weights; their steps alternate. Writes benchmarks/results/train_step.md and .json.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from machine import load_state, machine, state_at_start
from tables import markdown_table, write_results

from captionkit.models.base import build_model_and_tokenizer
from captionkit.registry import get_preset
from captionkit.training.config import TrainConfig
from captionkit.training.engine import make_accelerator

RESULTS = Path(__file__).resolve().parent / "results"
DEMO_MODEL = Path(__file__).resolve().parents[1] / "runs" / "demo" / "demo-clipcap-mlp" / "model"


def demo_model(directory: Path) -> tuple[torch.nn.Module, str]:
    if (directory / "config.json").is_file():
        from captionkit.models.model_dir import load_model_dir

        return load_model_dir(directory).model, f"the demo model's architecture ({directory.name})"
    from captionkit.data.formats import load_dataset
    from captionkit.data.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(tmp, images=60, seed=0)
        captions = [c for r in load_dataset(tmp).records for c in r.captions]
    model, _ = build_model_and_tokenizer(get_preset("demo-clipcap-mlp")["model"], captions)
    return model, "demo-clipcap-mlp preset (BPE trained on 60 synthetic images' captions)"


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    start = state_at_start()
    base, source = demo_model(args.demo_model)
    preset = get_preset("demo-clipcap-mlp")["train"]
    batch_size, length = preset["batch_size"], preset["max_caption_tokens"]
    g = torch.Generator().manual_seed(0)
    vocab = base.config.gpt2_config["vocab_size"] if base.config.gpt2_config else 1000
    batch = {
        "features": torch.randn(batch_size, base.config.clip_dim, generator=g),
        "input_ids": torch.randint(0, vocab, (batch_size, length), generator=g),
    }
    batch["labels"] = batch["input_ids"].clone()
    fp32 = copy.deepcopy(base).train()
    bf16 = copy.deepcopy(base).train()
    accelerator = make_accelerator(TrainConfig(mixed_precision="bf16"))  # the engine's own set-up
    opt32 = torch.optim.AdamW(fp32.parameters(), lr=preset["lr"])
    bf16, opt16 = accelerator.prepare(bf16, torch.optim.AdamW(bf16.parameters(), lr=preset["lr"]))

    def step32() -> float:
        loss = fp32(batch).loss
        loss.backward()
        opt32.step()
        opt32.zero_grad()
        return float(loss.detach())

    def step16() -> float:
        loss = bf16(batch).loss
        accelerator.backward(loss)
        opt16.step()
        opt16.zero_grad()
        return float(loss.detach())

    step32(), step16()  # warm-up
    seconds = {"float32": 0.0, "bf16 autocast": 0.0}
    losses: dict[str, list[float]] = {"float32": [], "bf16 autocast": []}
    for _ in range(args.steps):
        for name, fn in (("float32", step32), ("bf16 autocast", step16)):
            t0 = time.perf_counter()
            losses[name].append(fn())
            seconds[name] += time.perf_counter() - t0
    rows = [
        {
            "format": name,
            "steps": args.steps,
            "s/step": round(seconds[name] / args.steps, 3),
            "captions/s": round(args.steps * batch_size / seconds[name], 1),
            "speed-up": f"{seconds['float32'] / seconds[name]:.2f}x",
            "loss first -> last": f"{losses[name][0]:.3f} -> {losses[name][-1]:.3f}",
        }
        for name in seconds
    ]
    accelerator.end_training()
    return {
        "setup": {
            "model": source,
            "parameters": sum(p.numel() for p in base.parameters()),
            "batch_size": batch_size,
            "caption_tokens": length,
            "threads": args.threads,
            **machine(start),
        },
        "results": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["setup"]
    header = ["format", "steps", "s/step", "captions/s", "speed-up", "loss first -> last"]
    return (
        f"ClipCap-MLP training step (forward, backward, AdamW), {s['model']}, {s['parameters']:,} parameters, batch "
        f"{s['batch_size']} x {s['caption_tokens']} tokens, {s['threads']} threads (torch {s['torch']}, {s['cpu']}, "
        f"flags {' '.join(s['cpu_flags'])}; at start {load_state(s)}). "
        "Steps alternate between the two formats.\n\n" + markdown_table(header, report["results"]) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--demo-model", type=Path, default=DEMO_MODEL, help="a trained demo-clipcap-mlp model dir")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(args)
    table = markdown(report)
    write_results(args.out, "train_step", report, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
