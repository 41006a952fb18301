"""`captionkit features extract | info`: build an image-feature cache once per dataset and encoder, inspect one."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from captionkit.cli.common import (
    add_dataset_arguments,
    add_device_argument,
    add_json_argument,
    add_progress_argument,
    parse_options,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="extract and inspect image-feature caches")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    ex = verbs.add_parser(
        "extract",
        help="encode every image of a dataset once into a feature cache",
        description="Encode each distinct image once (batched, decoded in DataLoader workers) into safetensors "
        "shards + index.json + manifest.json. The work goes by input shard (a shard file, or "
        "--shard-size images of a folder dataset): under torchrun / accelerate launch each process "
        "encodes every N-th input shard and rank 0 merges the cache, the same cache one process "
        "writes. Re-running the same command resumes an interrupted run, input shard by input shard.",
    )
    add_dataset_arguments(ex)
    ex.add_argument(
        "--encoder",
        required=True,
        help="KIND:SOURCE, e.g. clip:openai/clip-vit-base-patch32, clip:DIR, vgg16:fc2@imagenet, "
        "vgg16:conv5_3@/path/vgg16-397923af.pth (no @: random weights)",
    )
    ex.add_argument("--out", required=True, help="cache directory (new, empty, or a cache to resume)")
    ex.add_argument(
        "--split",
        default="all",
        choices=["train", "dev", "val", "test", "all"],
        help="images of this split only (default: all)",
    )
    ex.add_argument("--batch-size", type=int, default=32)
    ex.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader processes decoding images (0: in-process; default: CPUs - 1, at most 4, which "
        "leaves the encoder a core: see benchmarks/results/features.md)",
    )
    ex.add_argument(
        "--shard-size",
        type=int,
        default=1024,
        help="images per input shard of a folder dataset (the unit of resumption and of the split "
        "across processes); a dataset of shard files goes by shard file",
    )
    ex.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default="float32",
        help="stored precision (float16 halves the size; reads return float32)",
    )
    add_device_argument(ex)
    add_progress_argument(ex)
    ex.add_argument(
        "--compute-dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="number format the encoder runs in (--dtype is the stored one): bfloat16 on CPUs with AVX-512 "
        "BF16/AMX and GPUs, float16 on GPUs only",
    )
    ex.set_defaults(func=run_extract)
    info = verbs.add_parser("info", help="describe a feature cache")
    info.add_argument("dir", help="cache directory")
    add_json_argument(info, "print the manifest (failed images counted) as JSON")
    info.set_defaults(func=run_info)
    p.set_defaults(func=lambda a: p.print_help())


def run_extract(args: argparse.Namespace) -> int:
    from captionkit.cli.processes import launch_processes
    from captionkit.data.features import dataset_fingerprint
    from captionkit.data.features_sharded import extract_sharded
    from captionkit.data.formats import load_dataset
    from captionkit.data.shards import plan_shards
    from captionkit.errors import DatasetError
    from captionkit.models.encoders import load_encoder
    from captionkit.models.precision import cast_encoder, resolve_precision

    dataset = load_dataset(args.dataset, format=args.format, **parse_options(args.option))
    records = dataset.split(args.split)
    if not records:
        raise DatasetError(f"{args.dataset}: no images in split {args.split!r}")
    procs = launch_processes(args.device)
    try:
        precision = resolve_precision(args.compute_dtype, None, procs.device)
        encoder = cast_encoder(load_encoder(args.encoder).to(procs.device), precision)
        # The fingerprint covers the whole dataset, so caches of different splits of one dataset share it.
        workers = args.workers if args.workers is not None else max(0, min(4, (os.cpu_count() or 1) - 1))
        cache = extract_sharded(
            plan_shards(records, args.shard_size),
            encoder,
            args.out,
            dataset_fingerprint=dataset_fingerprint(dataset.records),
            rank=procs.rank,
            world_size=procs.world_size,
            barrier=procs.barrier,
            batch_size=args.batch_size,
            num_workers=workers,
            dtype=args.dtype,
            progress=not args.no_progress,
        )
    finally:
        procs.close()
    if not procs.is_main:
        return 0
    wanted = {r.image_id for r in records}
    failed = len(wanted & set(cache.failed))
    print(
        f"{args.out}: {len(wanted) - failed} of {len(wanted)} images of split {args.split!r} encoded with "
        f"{cache.encoder_spec} -> {cache.feature_shape} {cache.manifest['dtype']}"
        + (f"; {failed} unreadable or missing (see `captionkit features info {args.out}`)" if failed else "")
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from captionkit.data.features import FeatureCache

    cache = FeatureCache.open(args.dir)
    m = cache.manifest
    size = sum(f.stat().st_size for f in Path(args.dir).glob("shard-*.safetensors"))
    if args.json:
        print(json.dumps({**m, "failed": len(m["failed"]), "size_bytes": size}, indent=2))
        return 0
    enc = m["encoder"]
    rows = [
        ("encoder", enc["spec"] + (f"  (weights: {enc['weights']})" if "weights" in enc else "")),
        ("features", f"{tuple(m['feature_shape'])} {m['dtype']}" + (f"  {enc['layout']}" if "layout" in enc else "")),
        (
            "images",
            f"{len(cache)} in {len(m['shards'])} shards, {size / 2**20:.1f} MiB"
            + ("" if m["complete"] else "  (INCOMPLETE: re-run extract to resume)"),
        ),
        ("failed", str(len(m["failed"])) + "".join(f"\n{'':16}{k}: {v}" for k, v in list(m["failed"].items())[:5])),
        ("fingerprint", m["dataset_fingerprint"]),
        ("created", f"{m['created']} by captionkit {m['captionkit_version']}"),
    ]
    if "preprocessing" in enc:
        rows.insert(2, ("preprocessing", json.dumps(enc["preprocessing"])))
    print(f"feature cache {args.dir}")
    for name, value in rows:
        print(f"  {name:<14}{value}")
    return 0
