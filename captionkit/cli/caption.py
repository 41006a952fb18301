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
    add_dtype_arguments,
    decoding_overrides,
    parse_options,
    precision_options,
    rerank_options,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "caption",
        help="caption images (files, folders, globs) or a whole dataset",
        description="Caption images. Prints `path<TAB>caption` or writes JSONL/CSV with --out. With "
        "--dataset SOURCE --out DIR: caption every image of the dataset shard by shard "
        "into DIR/<shard>.jsonl (under torchrun / accelerate launch, each process takes "
        "every N-th shard; a rerun skips finished shards), then join them in input order "
        "into DIR/captions.jsonl; unreadable images are listed in DIR/unreadable.json.",
    )
    p.add_argument("model_dir", help="a captionkit model directory (e.g. RUN_DIR/model)")
    p.add_argument("paths", nargs="*", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument(
        "--out", help="write results to FILE.jsonl or FILE.csv instead of printing; with --dataset, the output folder"
    )
    add_dataset_arguments(p, required=False)
    p.add_argument("--split", default="all", help="with --dataset: images of this split only (default: all)")
    p.add_argument(
        "--shard-size",
        type=int,
        default=1024,
        help="with --dataset: images per input shard of a folder dataset (shard files go by file)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--keep-going", action="store_true", help="exit 0 even if some images could not be read")
    p.add_argument(
        "--attention",
        metavar="OUT.png",
        help="attention models: write the image with one heat-map panel per word (one image only)",
    )
    add_decoding_arguments(p)
    add_dtype_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import captionkit
    from captionkit.config import to_dict
    from captionkit.decoding import DecodingConfig
    from captionkit.errors import ConfigError
    from captionkit.inference.files import caption_files, expand_image_paths
    from captionkit.inference.rerank import RerankConfig

    if args.dataset is not None:
        return _run_dataset(args)
    if not args.paths:
        raise FileNotFoundError("give image files, folders or globs to caption, or --dataset SOURCE --out DIR")
    paths = expand_image_paths(args.paths)
    captioner = captionkit.load(args.model_dir, device=args.device, **precision_options(args))
    decoding = decoding_overrides(args)
    rerank = rerank_options(args)
    if args.attention:
        if rerank:
            raise ConfigError("--attention shows one decoded caption's attention; it does not combine with --rerank")
        return _write_attention(captioner, paths, args.attention, decoding)
    settings = to_dict(DecodingConfig(**decoding))
    rerank_config = RerankConfig.from_options(**rerank)
    if rerank_config is not None:
        settings["rerank"] = to_dict(rerank_config)
    rows, failed = [], 0
    bar = tqdm(total=len(paths), unit="img", desc="captioning", file=sys.stderr, disable=len(paths) < 2)
    for result in caption_files(captioner, paths, batch_size=args.batch_size, **decoding, **rerank):
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
            batch_size=args.batch_size,
            progress=True,
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


def _write_rows(out: Path, rows: list[dict], model: str, settings: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    decoding = json.dumps(settings, sort_keys=True)
    full = [{**row, "model": model, "decoding": decoding} for row in rows]
    if out.suffix.lower() == ".csv":
        with out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "caption", "model", "decoding"])
            writer.writeheader()
            writer.writerows(full)
    else:
        with out.open("w", encoding="utf-8") as f:
            for row in full:
                f.write(json.dumps({**row, "decoding": settings}) + "\n")


def _write_attention(captioner, paths: list[Path], out: str, decoding: dict) -> int:
    from captionkit.data.images import load_image
    from captionkit.inference.attention import caption_with_attention, crop_fraction_of, render_attention_map

    if len(paths) != 1:
        raise FileNotFoundError(f"--attention takes exactly one image, got {len(paths)}")
    image = load_image(paths[0])
    words, weights = caption_with_attention(captioner, image, **decoding)
    render_attention_map(image, words, weights, out, crop_fraction=crop_fraction_of(captioner))
    print(f"{paths[0]}\t{' '.join(words)}")
    print(f"wrote {out}", file=sys.stderr)
    return 0
