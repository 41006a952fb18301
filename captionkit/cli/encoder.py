"""`captionkit encoder pretrain`: pretrain an image encoder as a classifier on labelled images."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encoder", help="image encoder utilities")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    pre = verbs.add_parser(
        "pretrain",
        help="pretrain an image encoder as a classifier on labelled images (ImageNet-style)",
        description="Trains a VGG kind (written as OUT/weights.safetensors in torchvision's layout: use it as "
        "KIND:fc2@OUT/weights.safetensors) or a CLIP image tower (clip:CONFIG_OR_DIR, written as the CLIP "
        "directory OUT/clip for `clip pretrain --image-tower`). Run again, it resumes an interrupted run "
        "from its last checkpoint and reuses a finished one.",
    )
    pre.add_argument("--encoder", required=True, help="vgg16, vgg16-bn, vgg16-small, vgg16-bn-small or clip:SOURCE")
    pre.add_argument(
        "--dataset",
        "--data",
        dest="data",
        required=True,
        help="synth:SEED (the demo's labelled scene stream), a folder of class subfolders, or a "
        ".csv/.tsv/.jsonl table of image + labels",
    )
    pre.add_argument("--out", required=True, help="output directory")
    pre.add_argument(
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="table columns: image_column=, labels_column=, separator= (default image, labels, ;); the scene "
        "stream's label groups: groups=colour,shape,kind,count[,background]",
    )
    pre.add_argument("--config", help="YAML/JSON file with EncoderPretrainConfig fields")
    pre.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an EncoderPretrainConfig field, e.g. --set steps=500 --set mixed_precision=bf16",
    )
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    pre.set_defaults(func=run_pretrain)
    p.set_defaults(func=lambda a: p.print_help())


def run_pretrain(args: argparse.Namespace) -> int:
    from captionkit.config import load_config
    from captionkit.errors import ConfigError, require

    require("accelerate", extra="train")
    from captionkit.training.encoder_pretrain import EncoderPretrainConfig, pretrain_encoder

    overrides = [*args.overrides, f"encoder={args.encoder}", f"data={args.data}"]
    for option in args.options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {option!r}: expected KEY=VALUE, e.g. --option labels_column=tags")
        overrides.append(f"data_options.{key}={value}")
    config = load_config(EncoderPretrainConfig, args.config, overrides)
    out = pretrain_encoder(args.out, config, progress=not args.no_progress)
    print(f"wrote {out}")
    return 0
