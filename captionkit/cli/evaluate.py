"""`captionkit evaluate MODEL_DIR --dataset PATH`: caption a split, score it, write RUN_DIR/eval/<split>/."""

from __future__ import annotations

import argparse
import json
import sys

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
        "evaluate",
        help="caption a dataset split with a model and score it",
        description="Caption every image of a split in batches, then write predictions.json, "
        "metrics.json, per_item.json, decoding.json and scoring.json to "
        "RUN_DIR/eval/<split>/ (RUN_DIR = the parent of MODEL_DIR when it is "
        "RUN_DIR/model).",
    )
    p.add_argument("model_dir", help="a captionkit model directory (e.g. RUN_DIR/model)")
    add_dataset_arguments(p)
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", help="a run directory (results go to OUT/eval/<split>) or the folder to write into")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--metrics", help="comma-separated metric names (default: all coco-caption metrics)")
    p.add_argument(
        "--tokenizer",
        choices=["auto", "java", "python"],
        default="auto",
        help="PTB tokenizer for the metrics (auto: pycocoevalcap's Java one if Java is installed)",
    )
    add_decoding_arguments(p)
    add_dtype_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from captionkit.evaluation.evaluate import evaluate_model

    result = evaluate_model(
        args.model_dir,
        args.dataset,
        args.split,
        decoding_overrides(args),
        args.out,
        batch_size=args.batch_size,
        device=args.device,
        metrics=args.metrics,
        tokenizer=args.tokenizer,
        dataset_format=args.format,
        dataset_options=parse_options(args.option),
        rerank=rerank_options(args),
        precision=precision_options(args),
    )
    notes = [f"tokenizer: {result.info['tokenizer']}", *result.info["skipped"].values()]
    print(
        f"captionkit: evaluated {result.info['images_scored']} images; "
        + "; ".join(notes)
        + f"; wrote {result.out_dir}",
        file=sys.stderr,
    )
    print(json.dumps(result.corpus, indent=2))
    return 0
