"""Feature-extraction throughput: end to end (decode + preprocess in DataLoader workers + forward + shard writes,
through `extract_features`) against the forward pass alone on pre-decoded tensors, for VGG16 fc2 and CLIP ViT-B/32
(random weights, 224 px), plus how fast a Flickr8k-sized cache (8,091 x 512) opens and reads. Prints a table and
writes benchmarks/results/features.{json,md}.

    nice python benchmarks/features.py [--images 200] [--batch-size 32] [--workers 0,1,2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captionkit.data.features import CacheWriter, FeatureCache, extract_features
from captionkit.data.images import load_image
from captionkit.data.records import Record
from captionkit.models.encoders import ImageEncoder, load_encoder

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PHOTOS = REPO.parent / "shared" / "fixtures" / "flickr8k" / "Images"
TARGET = 0.85  # issue 4: end to end >= 85% of forward-only throughput
# CLIP ViT-B/32's architecture (openai/clip-vit-base-patch32); the text tower is built too but never run.
CLIP_VIT_B32 = {
    "model_type": "clip",
    "projection_dim": 512,
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "max_position_embeddings": 77,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 1,
    },
    "vision_config": {
        "image_size": 224,
        "patch_size": 32,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
    },
}


def make_jpegs(folder: Path, n: int) -> tuple[list[Record], str]:
    """`n` 500x375 JPEGs (quality 90): centre crops of the real Flickr8k photos, mirrored and shifted so each file
    differs, when ../shared is there (decoding cost of real photos); smooth random scenes otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        if sources:
            photo = Image.open(sources[i % len(sources)]).convert("RGB")
            photo = photo.resize((520, 390), Image.BICUBIC)
            dx, dy = (i // len(sources)) % 20, (i // len(sources)) % 15
            image = photo.crop((dx, dy, dx + 500, dy + 375))
            if (i // len(sources)) % 2:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            smooth = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.BICUBIC), dtype=np.int16)
            image = Image.fromarray(np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8))
        path = folder / f"img{i:04d}.jpg"
        image.save(path, quality=90)
        records.append(Record(path.name, path, ("a caption",)))
    return records, ("flickr8k photos, cropped to 500x375" if sources else "synthetic 500x375 scenes")


def forward_only(encoder: ImageEncoder, pixels: torch.Tensor, batch_size: int) -> float:
    """images/s of the forward pass alone over pre-decoded, preprocessed pixels."""
    with torch.inference_mode():
        encoder(pixels[:batch_size])  # warm-up: oneDNN primitive creation, allocator
        start = time.perf_counter()
        for s in range(0, len(pixels), batch_size):
            encoder(pixels[s : s + batch_size])
        return len(pixels) / (time.perf_counter() - start)


def end_to_end(encoder: ImageEncoder, records: list[Record], batch_size: int, workers: int, tmp: Path) -> float:
    """images/s of extract_features: workers decoding + preprocessing, forward, shard and index writes."""
    out = Path(tempfile.mkdtemp(dir=tmp))
    start = time.perf_counter()
    cache = extract_features(
        records,
        encoder,
        out / "cache",
        batch_size=batch_size,
        num_workers=workers,
        dataset_fingerprint="bench",
        progress=False,
    )
    seconds = time.perf_counter() - start
    assert len(cache) == len(records), cache.failed
    return len(records) / seconds


def cache_open_timing(tmp: Path, n: int = 8091, dim: int = 512) -> dict[str, float]:
    """Write an n x dim cache with the real writer (random features), then time open / get / get_many(all)."""
    writer = CacheWriter(tmp / "flickr8k-sized", {"spec": "synthetic:random", "feature_shape": [dim]}, (dim,), "bench")
    ids = [f"{i:010d}_image.jpg" for i in range(n)]
    gen = torch.Generator().manual_seed(0)
    for s in range(0, n, 1024):
        writer.commit(ids[s : s + 1024], torch.randn(len(ids[s : s + 1024]), dim, generator=gen), {})
    writer.finish()
    start = time.perf_counter()
    cache = FeatureCache.open(tmp / "flickr8k-sized")
    opened = time.perf_counter()
    cache.get(ids[n // 2])
    one = time.perf_counter()
    everything = cache.get_many(ids)
    done = time.perf_counter()
    assert everything.shape == (n, dim)
    return {
        "images": n,
        "dim": dim,
        "open_s": opened - start,
        "first_get_s": one - opened,
        "get_many_all_s": done - one,
        "open_plus_read_all_s": done - start,
    }


def build(name: str, tmp: Path) -> ImageEncoder:
    if name == "vgg16:fc2":
        return load_encoder("vgg16:fc2")
    config = tmp / "clip-vit-b32.json"
    config.write_text(json.dumps(CLIP_VIT_B32))
    return load_encoder(f"clip:{config}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to compare")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--encoders", default="vgg16:fc2,clip-vit-b32")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        records, source = make_jpegs(tmp / "images", args.images)
        for name in args.encoders.split(","):
            encoder = build(name, tmp)
            pixels = torch.stack([encoder.preprocess(load_image(r.image_path)) for r in records])
            for workers in (int(w) for w in args.workers.split(",")):
                # measured back to back so that both see the same load from whatever else runs on the machine
                fwd = forward_only(encoder, pixels, args.batch_size)
                e2e = end_to_end(encoder, records, args.batch_size, workers, tmp)
                rows.append(
                    {
                        "encoder": name,
                        "workers": workers,
                        "torch_threads": args.threads,
                        "forward_only_img_s": round(fwd, 2),
                        "end_to_end_img_s": round(e2e, 2),
                        "ratio": round(e2e / fwd, 3),
                    }
                )
                print(
                    f"  {name} workers={workers}: forward-only {fwd:.1f} img/s, end-to-end {e2e:.1f} img/s", flush=True
                )
            del encoder, pixels
        cache = cache_open_timing(tmp)
    lines = [
        f"| encoder | workers | torch threads | forward-only img/s | end-to-end img/s | ratio "
        f"(target >= {TARGET:.0%}) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['encoder']} | {r['workers']} | {r['torch_threads']} | {r['forward_only_img_s']:.1f} | "
            f"{r['end_to_end_img_s']:.1f} | {r['ratio']:.0%} |"
        )
    ms = {k: f"{v * 1e3:.1f} ms" for k, v in cache.items() if k.endswith("_s")}
    cache_line = (
        f"Flickr8k-sized cache ({cache['images']} x {cache['dim']} float32): open {ms['open_s']}, "
        f"first get {ms['first_get_s']}, get_many(all) {ms['get_many_all_s']}, "
        f"open + read all {ms['open_plus_read_all_s']}"
    )
    table = "\n".join(lines)
    setup = (
        f"{args.images} JPEGs ({source}), batch {args.batch_size}, fp32, random weights, 224 px, "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})"
    )
    print(f"\n{setup}\n\n{table}\n\n{cache_line}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "features.json").write_text(
        json.dumps({"setup": setup, "target_ratio": TARGET, "rows": rows, "cache_open": cache}, indent=2) + "\n"
    )
    (RESULTS / "features.md").write_text(f"# Feature extraction throughput\n\n{setup}\n\n{table}\n\n{cache_line}\n")


if __name__ == "__main__":
    main()
