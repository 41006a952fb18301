"""Serving under load: images/s and p50/p99 latency of `captionkit serve` for 1, 8 and 32 concurrent clients, with
micro-batching on (--max-batch 32) and off (--max-batch 1), side by side in one run (issue 11). Prints a Markdown
table and writes benchmarks/results/serve.json and serve.md.

    nice python benchmarks/serve.py [--model DIR] [--requests 2000] [--small-requests 200] [--threads 1]

The server is a real `captionkit serve` process on 127.0.0.1 (a free port); the clients are httpx coroutines in
this process, each sending one image per request in a loop until the run's request count is reached (bounded: the
run stops by itself). Without --model it builds a demo-like ClipCap in a temporary directory: MLP mapper (k=10)
-> the demo's 3-layer GPT-2 (captionkit:demo-gpt2) on the tiny CLIP encoder, random weights, so every caption runs
the full --max-new-tokens (fixed work per image). Server RSS is read after a warm-up and after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CLIENTS = (1, 8, 32)
MODES = {"on": 32, "off": 1}  # micro-batching: --max-batch
TARGET_SPEEDUP, TARGET_RSS = 3.0, 0.10  # issue 11: >= 3x images/s at 32 clients; RSS within 10% of warm-up


def build_demo_like_model(directory: Path) -> Path:
    from captionkit.models.base import build_model
    from captionkit.models.model_dir import save_model_dir
    from captionkit.registry import get_model_class

    torch.manual_seed(0)
    model = build_model(
        {
            "type": "clipcap",
            "mapping": "mlp",
            "prefix_length": 10,
            "clip_dim": 64,
            "gpt2": "captionkit:demo-gpt2",
            "tokenizer": "train-bpe",
            "freeze_gpt2": False,
        }
    )
    captions = [
        "a red circle above a blue square .",
        "two green stars on a white background .",
        "a yellow triangle left of a purple cross .",
    ] * 20
    tokenizer = get_model_class("clipcap").build_tokenizer(model.config, captions)
    return save_model_dir(directory / "model", model, tokenizer, "clip:captionkit:tiny-clip")


def test_images(n: int = 8) -> list[bytes]:
    """A few 320x240 JPEGs of coloured shapes (decoding cost like a small photo)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        image = Image.new("RGB", (320, 240), tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = (int(v) for v in rng.integers(0, 260, 2))
            draw.ellipse((x, y % 180, x + 60, y % 180 + 60), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, max_batch: int, wait_ms: float, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "captionkit.cli",
            "serve",
            f"bench={model}",
            "--port",
            str(port),
            "--max-batch",
            str(max_batch),
            "--batch-wait-ms",
            str(wait_ms),
            "--device",
            "cpu",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600  # a busy 2-core machine can take minutes to import torch
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read()}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start within 600 s")


async def load(url: str, clients: int, requests: int, images: list[bytes], tokens: int) -> dict:
    """`clients` coroutines send requests until `requests` have been sent; latency per request in ms."""
    latencies: list[float] = []
    failures: list[str] = []
    sent = 0

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests:
            i = sent
            sent += 1
            began = time.perf_counter()
            try:
                response = await c.post(
                    url + "/v1/captions",
                    data={"max_new_tokens": str(tokens)},
                    files={"image": (f"{i}.jpg", images[i % len(images)], "image/jpeg")},
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            latencies.append((time.perf_counter() - began) * 1000)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as c:
        began = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        seconds = time.perf_counter() - began
    ms = np.array(latencies) if latencies else np.array([float("nan")])
    return {
        "clients": clients,
        "requests": requests,
        "failed": len(failures),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "failures_sample": failures[:3],
    }


def rss_mb(process: subprocess.Popen) -> float:
    return round(psutil.Process(process.pid).memory_info().rss / 2**20, 1)


def run_mode(mode: str, model: Path, args: argparse.Namespace, images: list[bytes]) -> dict:
    process, url = start_server(model, MODES[mode], args.batch_wait_ms, args.threads)
    try:
        # warm-up at the highest concurrency, so the largest batch shapes have been allocated once
        asyncio.run(load(url, max(CLIENTS), args.warmup, images, args.max_new_tokens))
        rss_warm = rss_mb(process)
        rows = []
        for clients in CLIENTS:
            n = args.requests if clients == max(CLIENTS) else args.small_requests
            row = asyncio.run(load(url, clients, n, images, args.max_new_tokens))
            rows.append({"batching": mode, "max_batch": MODES[mode], **row})
            print(
                f"  batching {mode:3} clients {clients:2}: {row['images_per_s']:7.1f} images/s, "
                f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, {row['failed']} failed",
                flush=True,
            )
        rss_after = rss_mb(process)
    finally:
        process.terminate()
        process.wait(60)
    return {"rows": rows, "rss_warm_mb": rss_warm, "rss_after_mb": rss_after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model directory (default: a demo-like ClipCap built here)")
    parser.add_argument("--requests", type=int, default=2000, help="requests at 32 clients (per mode)")
    parser.add_argument("--small-requests", type=int, default=200, help="requests at 1 and 8 clients")
    parser.add_argument("--warmup", type=int, default=256, help="requests at 32 clients before RSS is read")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    args = parser.parse_args()

    load_start = os.getloadavg()
    images = test_images()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_demo_like_model(Path(tmp))
        results = {mode: run_mode(mode, model, args, images) for mode in MODES}
    rows = results["on"]["rows"] + results["off"]["rows"]
    at32 = {r["batching"]: r for r in rows if r["clients"] == max(CLIENTS)}
    speedup = at32["on"]["images_per_s"] / at32["off"]["images_per_s"]
    failed = sum(r["failed"] for r in rows)
    rss = {mode: (results[mode]["rss_warm_mb"], results[mode]["rss_after_mb"]) for mode in MODES}
    rss_growth = max((after - warm) / warm for warm, after in rss.values())
    summary = {
        "speedup_at_32": round(speedup, 2),
        "failed": failed,
        "rss_growth": round(rss_growth, 4),
        "speedup_target_met": speedup >= TARGET_SPEEDUP,
        "rss_target_met": rss_growth <= TARGET_RSS,
    }
    described = (
        args.model.name if args.model else "a demo-like ClipCap (MLP k=10 -> 3-layer GPT-2, tiny CLIP, random weights)"
    )
    load_text = ", ".join(f"{v:.1f}" for v in load_start)
    header = (
        f"`captionkit serve` on 127.0.0.1, {described}, {args.max_new_tokens} tokens per caption, greedy, "
        f"one 320x240 JPEG per request, {args.threads} torch thread(s) in the server, clients in one process "
        f"on the same machine (torch {torch.__version__}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}); the machine was busy with other jobs (load average at start "
        f"{load_text}). Batching on: --max-batch 32 --batch-wait-ms {args.batch_wait_ms:g}; off: --max-batch 1."
    )
    lines = [
        header,
        "",
        "| batching | clients | requests | failed | images/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['batching']} | {r['clients']} | {r['requests']} | {r['failed']} | {r['images_per_s']} | "
        f"{r['p50_ms']} | {r['p99_ms']} |"
        for r in rows
    ]
    lines += [
        "",
        f"At 32 clients batching on gives {speedup:.2f}x the images/s of batching off (target >= "
        f"{TARGET_SPEEDUP:g}x: {'met' if summary['speedup_target_met'] else 'NOT met'}); {failed} failed "
        f"requests in all. Server RSS after warm-up -> after the run: "
        + "; ".join(f"batching {m} {w} -> {a} MB" for m, (w, a) in rss.items())
        + f" (largest growth {rss_growth:+.1%}, target within {TARGET_RSS:.0%}: "
        f"{'met' if summary['rss_target_met'] else 'NOT met'}).",
    ]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.md").write_text(table + "\n", encoding="utf-8")
    (RESULTS / "serve.json").write_text(
        json.dumps(
            {
                "settings": {
                    **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "cpus": os.cpu_count(),
                    "load_average_at_start": load_start,
                    "load_average_at_end": os.getloadavg(),
                },
                "rows": rows,
                "rss_mb": {m: {"after_warmup": w, "after_run": a} for m, (w, a) in rss.items()},
                "summary": summary,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
