"""`captionkit caption MODEL_DIR PATH...`: caption image files, folders and globs; with --dataset, a whole dataset
by input shard (under torchrun, shards split across processes), resumable, into OUT/captions.jsonl."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from tqdm import tqdm

from captionkit.cli.common import (
    add_dataset_arguments,
    add_decoding_arguments,
    add_device_argument,
    add_dtype_arguments,
    add_progress_argument,
    decoding_overrides,
    parse_options,
    precision_options,
    rerank_options,
)

BATCH_SIZE = 16
OUT_SUFFIXES = (".jsonl", ".json", ".csv")  # what --out FILE writes: JSON lines, one JSON array, CSV


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "caption",
        help="caption images (files, folders, globs) or a whole dataset",
        description="Caption images. Prints `path<TAB>caption`, or writes FILE.jsonl (one JSON object a line), "
        "FILE.json (one JSON array) or FILE.csv with --out. With "
        "--dataset SOURCE --out DIR: caption every image of the dataset shard by shard "
        "into DIR/<shard>.jsonl (under torchrun / accelerate launch, each process takes "
        "every N-th shard; a rerun skips finished shards), then join them in input order "
        "into DIR/captions.jsonl; unreadable images are listed in DIR/unreadable.json.",
    )
    p.add_argument("model_dir", help="a captionkit model directory (e.g. RUN_DIR/model)")
    p.add_argument("paths", nargs="*", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument(
        "--out",
        help="write results to FILE.jsonl, FILE.json or FILE.csv instead of printing; with --dataset, the "
        "output folder",
    )
    add_dataset_arguments(p, required=False)
    p.add_argument("--split", default="all", help="with --dataset: images of this split only (default: all)")
    p.add_argument(
        "--shard-size",
        type=int,
        default=1024,
        help="with --dataset: images per input shard of a folder dataset (shard files go by file)",
    )
    p.add_argument("--batch-size", type=int, default=None, help=f"images per batch (default {BATCH_SIZE})")
    add_device_argument(p)
    p.add_argument("--keep-going", action="store_true", help="exit 0 even if some images could not be read")
    add_progress_argument(p)
    p.add_argument(
        "--attention",
        metavar="OUT.png",
        help="attention models: write the image with one heat-map panel per word (one image only; not with "
        "--out, --batch-size, --keep-going, --dataset or --rerank)",
    )
    add_decoding_arguments(p)
    add_dtype_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import captionkit
    from captionkit.config import to_dict
    from captionkit.data.images import IMAGE_SUFFIXES
    from captionkit.decoding import DecodingConfig
    from captionkit.inference.files import caption_files, expand_image_paths
    from captionkit.inference.rerank import RerankConfig

    decoding = decoding_overrides(args)
    rerank = rerank_options(args)
    if args.attention:
        _check_attention_options(args, rerank)
    if args.dataset is not None:
        return _run_dataset(args)
    if not args.paths:
        raise FileNotFoundError("give image files, folders or globs to caption, or --dataset SOURCE --out DIR")
    if args.out:
        _check_out_suffix(Path(args.out))
    paths = expand_image_paths(args.paths)
    for item in args.paths:  # an empty folder is an error, as a pattern that matches nothing is
        if Path(item).is_dir() and not expand_image_paths([item]):
            raise FileNotFoundError(f"{item}: the folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    captioner = captionkit.load(args.model_dir, device=args.device, **precision_options(args))
    if args.attention:
        return _write_attention(captioner, paths, args.attention, decoding)
    settings = to_dict(DecodingConfig(**decoding))
    rerank_config = RerankConfig.from_options(**rerank)
    if rerank_config is not None:
        settings["rerank"] = to_dict(rerank_config)
    rows, failed = [], 0
    bar = tqdm(
        total=len(paths), unit="img", desc="captioning", file=sys.stderr, disable=args.no_progress or len(paths) < 2
    )
    for result in caption_files(captioner, paths, batch_size=args.batch_size or BATCH_SIZE, **decoding, **rerank):
        bar.update(1)
        if result.error:
            failed += 1
            tqdm.write(f"warning: skipped {result.error}", file=sys.stderr)
            continue
        rows.append({"path": str(result.path), "caption": result.caption})
        if not args.out:
            tqdm.write(f"{result.path}\t{result.caption}")
    bar.close()
    if args.out:
        _write_rows(Path(args.out), rows, model=str(args.model_dir), settings=settings)
    print(
        f"captioned {len(rows)} of {len(paths)} images, {failed} failed" + (f"; wrote {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 1 if failed and not args.keep_going else 0


def _run_dataset(args: argparse.Namespace) -> int:
    import captionkit
    from captionkit.cli.processes import launch_processes
    from captionkit.data.formats import load_dataset
    from captionkit.data.shards import plan_shards
    from captionkit.errors import ConfigError, DatasetError
    from captionkit.inference.bulk import caption_shards

    if not args.out or args.paths:
        raise ConfigError("--dataset SOURCE needs --out DIR (a folder for the per-shard files) and no image paths")
    records = load_dataset(args.dataset, args.format, **parse_options(args.option)).split(args.split)
    if not records:
        raise DatasetError(f"{args.dataset}: no images in split {args.split!r}")
    procs = launch_processes(args.device)
    try:
        captioner = captionkit.load(args.model_dir, device=procs.device, **precision_options(args))
        result = caption_shards(
            captioner,
            plan_shards(records, args.shard_size),
            args.out,
            model=str(args.model_dir),
            rank=procs.rank,
            world_size=procs.world_size,
            barrier=procs.barrier,
            batch_size=args.batch_size or BATCH_SIZE,
            progress=not args.no_progress,
            **decoding_overrides(args),
        )
    finally:
        procs.close()
    if not procs.is_main:
        return 0
    print(
        f"captioned {result.captioned} images, {len(result.unreadable)} unreadable"
        + (f" (listed in {Path(args.out) / 'unreadable.json'})" if result.unreadable else "")
        + f"; wrote {result.out}",
        file=sys.stderr,
    )
    return 1 if result.unreadable and not args.keep_going else 0


def _check_attention_options(args: argparse.Namespace, rerank: dict) -> None:
    """--attention captions one image into one PNG: refuse the options it would otherwise ignore."""
    from captionkit.errors import ConfigError

    given = [
        flag
        for flag, value in (
            ("--out", args.out),
            ("--batch-size", args.batch_size),
            ("--keep-going", args.keep_going),
            ("--dataset", args.dataset),
            ("--rerank", rerank),
        )
        if value
    ]
    if given:
        raise ConfigError(
            f"--attention writes one image's attention map to its PNG; it does not combine with {', '.join(given)}"
        )


def _check_out_suffix(out: Path) -> None:
    from captionkit.errors import ConfigError

    if out.suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError(f"--out {out}: write captions to a .jsonl, .json or .csv file (got {out.suffix or 'none'!r})")


def _write_rows(out: Path, rows: list[dict], model: str, settings: dict) -> None:
    """.csv: one row per image, the decoding settings as a JSON string; .jsonl: one object a line; .json: an array."""
    out.parent.mkdir(parents=True, exist_ok=True)
    full = [{**row, "model": model, "decoding": settings} for row in rows]
    suffix = out.suffix.lower()
    if suffix == ".csv":
        with out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "caption", "model", "decoding"])
            writer.writeheader()
            writer.writerows({**row, "decoding": json.dumps(settings, sort_keys=True)} for row in full)
    elif suffix == ".json":
        out.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    else:
        with out.open("w", encoding="utf-8") as f:
            for row in full:
                f.write(json.dumps(row) + "\n")


def _write_attention(captioner, paths: list[Path], out: str, decoding: dict) -> int:
    import captionkit
    from captionkit.data.text import tidy_caption
    from captionkit.errors import ConfigError

    if len(paths) != 1:
        raise ConfigError(f"--attention takes exactly one image, got {len(paths)}")
    words = captionkit.attention_map(captioner, paths[0], out, **decoding)
    print(f"{paths[0]}\t{tidy_caption(' '.join(words))}")  # the same caption text as without --attention
    print(f"wrote {out}", file=sys.stderr)
    return 0
