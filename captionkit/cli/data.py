"""`captionkit data check | convert | synth`: validate, convert and generate caption datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from captionkit.cli.common import (
    add_dataset_arguments,
    add_json_argument,
    add_progress_argument,
    dataset_path,
    parse_options,
)

PROBLEMS_SHOWN = 40


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check, convert and generate caption datasets")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")

    check = verbs.add_parser("check", help="validate a dataset: images, splits, captions, problems with file:line")
    _add_reader_arguments(check)
    add_json_argument(check)
    check.add_argument("--strict", action="store_true", help="exit 1 if any problem is found")
    check.add_argument("--no-decode", action="store_true", help="only check that image files exist (faster)")
    check.add_argument("--max-pixels", type=int, default=None, help="largest image accepted (pixels)")
    add_progress_argument(check)
    check.set_defaults(func=run_check)

    convert = verbs.add_parser("convert", help="write a dataset as Karpathy split JSON or COCO references JSON")
    _add_reader_arguments(convert)
    convert.add_argument("--to", required=True, choices=["karpathy", "coco"], help="output format")
    convert.add_argument("--out", required=True, type=Path, help="output JSON file")
    convert.add_argument("--split", default=None, help="only this split (train, dev/val, test); default all")
    convert.set_defaults(func=run_convert)

    synth = verbs.add_parser("synth", help="write the built-in synthetic demo dataset (Flickr8k layout)")
    synth.add_argument("out", type=Path, help="output directory")
    synth.add_argument("--images", type=int, default=100, help="number of images (default 100)")
    synth.add_argument("--seed", type=int, default=0, help="random seed: same arguments, byte-identical output")
    synth.add_argument("--size", type=int, default=None, help="image side in pixels")
    synth.add_argument("--force", action="store_true", help="replace a dataset already in OUT")
    synth.set_defaults(func=run_synth)
    p.set_defaults(func=lambda a: p.print_help())


def _add_reader_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser, positional=True)
    parser.add_argument("--image-dir", type=Path, default=None, help="folder holding the images")


def reader_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """--image-dir and --option KEY=VALUE (values parsed as YAML: true, null, 0.8, [a, b])."""
    options = parse_options(args.option)
    if args.image_dir is not None:
        options["image_dir"] = args.image_dir
    return options


def run_check(args: argparse.Namespace) -> int:
    from captionkit.data.check import check_dataset

    report = check_dataset(
        dataset_path(args),
        args.format,
        decode_images=not args.no_decode,
        max_pixels=args.max_pixels,
        progress=not args.no_progress,
        **reader_kwargs(args),
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 1 if args.strict and report["problems"] else 0


def format_report(report: dict[str, Any]) -> str:
    """The human summary of a `check_dataset` report."""
    splits = report["splits"]
    found = report["images_found_per_split"]
    lines = [
        f"{report['path']}: {report['format']} dataset",
        (
            f"  shards:   {report['shards']} read, {report['corrupt_shards']} corrupt or cut short"
            if report.get("shards") is not None
            else f"  files:    {', '.join(report['files'])}"
        ),
        "  splits:   "
        + ", ".join(f"{s} {n} ({found[s]} with images)" for s, n in splits.items())
        + f"; {report['images_in_no_split']} images in no split",
        f"            from {report['split_source']}",
        f"  images:   {report['images_total']} with captions, {report['images_found']} found, "
        f"{report['images_missing']} missing, "
        + (
            "not decoded (--no-decode)"
            if report["images_unreadable"] is None
            else f"{report['images_unreadable']} unreadable"
        ),
        f"  captions: {report['captions']}; per image: "
        + ", ".join(f"{n} captions x {count}" for n, count in report["captions_per_image"].items()),
        "  words per caption: " + ", ".join(f"{k} {v}" for k, v in report["caption_words"].items()),
        f"  bogus keys {report['bogus_keys']}, empty captions {report['empty_captions']}, "
        f"duplicate captions {report['duplicate_captions']}",
    ]
    if report["missing_examples"]:
        lines.append("  missing images (first): " + ", ".join(Path(p).name for p in report["missing_examples"]))
    problems = report["problems"]
    lines.append(f"problems: {len(problems)}" if problems else "problems: none")
    for problem in problems[:PROBLEMS_SHOWN]:
        where = problem["file"] or "<dataset>"
        where += f":{problem['line']}" if problem["line"] is not None else ""
        lines.append(f"  [{problem['kind']}] {where}: {problem['detail']}")
    if len(problems) > PROBLEMS_SHOWN:
        lines.append(f"  ... and {len(problems) - PROBLEMS_SHOWN} more (--json lists all)")
    return "\n".join(lines)


def run_convert(args: argparse.Namespace) -> int:
    from captionkit.data.formats import load_dataset, write_coco_references, write_karpathy

    dataset = load_dataset(dataset_path(args), args.format, **reader_kwargs(args))
    records = dataset.split(args.split) if args.split else dataset.records
    if args.to == "karpathy":
        out = write_karpathy(records, args.out, dataset_name=dataset.format)
    else:
        out = write_coco_references(records, args.out)
    captions = sum(len(r.captions) for r in records)
    print(f"wrote {len(records)} images, {captions} captions ({args.split or 'all splits'}) to {out}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from captionkit.data.formats import load_dataset
    from captionkit.data.synthetic import write_synthetic_dataset
    from captionkit.errors import ConfigError

    if not args.force and args.out.is_dir() and any(args.out.iterdir()):
        raise ConfigError(
            f"{args.out} already holds files; pass --force to replace the dataset there, or choose a new folder"
        )
    size = {} if args.size is None else {"size": args.size}
    out = write_synthetic_dataset(args.out, images=args.images, seed=args.seed, **size)
    dataset = load_dataset(out)
    per_split = ", ".join(f"{s} {len(dataset.split(s))}" for s in ("train", "dev", "test"))
    captions = sum(len(r.captions) for r in dataset)
    print(f"wrote {len(dataset)} images ({per_split}), {captions} captions to {out}")
    return 0
