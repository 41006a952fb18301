"""`captionkit clip pretrain`: contrastive CLIP training on a caption dataset (a frozen encoder for ClipCap)."""

from __future__ import annotations

import argparse

from captionkit.cli.common import add_dataset_arguments, add_progress_argument, parse_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clip", help="CLIP utilities")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    pre = verbs.add_parser(
        "pretrain",
        help="train (or adapt) a CLIP contrastively on a dataset's train split",
        description="Writes a CLIP directory usable as encoder `clip:OUT`. Without --init a new "
        "small CLIP is trained from scratch (what the offline demo does). Trains on the same engine as "
        "`train` (checkpoints, log.jsonl, torchrun). Run again, it resumes an interrupted run from its last "
        "checkpoint and reuses a finished one.",
    )
    add_dataset_arguments(pre)
    pre.add_argument("--out", required=True, help="CLIP directory to write")
    pre.add_argument("--init", help="hub id or directory of a pretrained CLIP to adapt instead of a new model")
    pre.add_argument(
        "--image-tower",
        help="LiT: a CLIP directory whose image side is loaded and locked (e.g. OUT/clip "
        "of `encoder pretrain --encoder clip:...`); only the text tower trains",
    )
    pre.add_argument("--config", help="YAML/JSON file with ClipPretrainConfig fields")
    pre.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a ClipPretrainConfig field, e.g. --set epochs=5",
    )
    add_progress_argument(pre)
    pre.set_defaults(func=run_pretrain)
    p.set_defaults(func=lambda a: p.print_help())


def run_pretrain(args: argparse.Namespace) -> int:
    from captionkit.config import load_config
    from captionkit.errors import require

    require("accelerate", extra="train")
    from captionkit.training.clip_pretrain import ClipPretrainConfig, pretrain_clip

    overrides = (
        list(args.overrides)
        + ([f"init={args.init}"] if args.init else [])
        + ([f"image_tower={args.image_tower}"] if args.image_tower else [])
    )
    config = load_config(ClipPretrainConfig, args.config, overrides)
    out = pretrain_clip(
        args.dataset,
        args.out,
        config,
        dataset_format=args.format,
        dataset_options=parse_options(args.option),
        progress=not args.no_progress,
    )
    print(f"wrote {out} (use it as --set encoder=clip:{out})")
    return 0
