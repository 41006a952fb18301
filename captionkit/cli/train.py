"""`captionkit train`: train a model from a preset or a config file, resumable, on one or many processes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from captionkit.cli.common import add_dataset_arguments, add_progress_argument, parse_options
from captionkit.rundir import RESOLVED_CONFIG

EPILOG = """examples:
  captionkit train --preset tiny-clipcap-mlp --dataset data/synth --out runs/tiny
  captionkit train --config run.yaml --set train.lr=1e-4 --set train.epochs=5
  captionkit train --out runs/tiny --resume          (continues from the latest valid checkpoint)
  captionkit train --preset clipcap-mlp-scst --init-from runs/clipcap-mlp/model --dataset data/Flickr8k --out runs/scst
                                                     (self-critical fine-tuning of a cross-entropy model)
  captionkit train --init-from runs/a/model --dataset data/other --out runs/b   (fine-tune on other data)
  torchrun --nproc_per_node 2 -m captionkit.cli train --config run.yaml   (one model, gradients averaged)"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a captioning model",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a captioning model. Settings come from a preset, then a config file, "
        "then the flags below, then --set overrides.",
    )
    p.add_argument("--config", help="run config file (YAML or JSON): model, encoder, dataset, train, eval, out")
    p.add_argument("--preset", help="start from a named preset (see `captionkit models list`)")
    add_dataset_arguments(p, required=False)
    p.add_argument("--out", help="run directory (RUN_DIR)")
    add_progress_argument(p)
    p.add_argument("--features", help="feature cache directory (default: RUN_DIR/../features/<encoder>-<dataset>)")
    p.add_argument(
        "--init-from",
        metavar="MODEL_DIR",
        help="start from this model directory's weights and tokenizer (same architecture; its model and "
        "encoder settings are used unless the preset/config gives them)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set train.lr=1e-4 (repeatable)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest valid checkpoint in RUN_DIR (with no --config/--preset, "
        "RUN_DIR/resolved_config.json is used)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from captionkit.errors import ConfigError, require

    require("accelerate", extra="train")
    from captionkit.training import load_run_config, train

    config_file = args.config
    if args.resume and config_file is None and args.preset is None:
        if args.out is None:
            raise ConfigError("--resume needs --out RUN_DIR (or a --config/--preset)")
        config_file = Path(args.out) / RESOLVED_CONFIG
    if config_file is None and args.preset is None and args.init_from is None:
        raise ConfigError("give --preset NAME (see `captionkit models list`), --config FILE or --init-from MODEL_DIR")
    options = parse_options(args.option)  # --option K=V is --set dataset_options.K=V
    config = load_run_config(
        config_file,
        args.preset,
        args.overrides,
        dataset=args.dataset,
        out=args.out,
        features=args.features,
        dataset_format=None if args.format == "auto" else args.format,
        dataset_options=options or None,
        init_from=args.init_from,
    )
    model_dir = train(config, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line, not one per process
        print(f"model: {model_dir}")
    return 0
