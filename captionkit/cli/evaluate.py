"""`captionkit evaluate MODEL_DIR --dataset PATH`: caption a split, score it, write one results folder in the run."""

from __future__ import annotations

import argparse
import json
import sys

from captionkit.cli.common import (
    add_dataset_arguments,
    add_decoding_arguments,
    add_device_argument,
    add_dtype_arguments,
    add_progress_argument,
    add_ptb_tokenizer_argument,
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
        "RUN_DIR/eval/<split>/<dataset>-<hash>/<decoding>-<hash>/ (RUN_DIR = the parent of MODEL_DIR "
        "when it is RUN_DIR/model, else --out): results on other data, another split or with other "
        "decoding go to their own folder and never replace earlier ones. `captionkit report RUN_DIR` "
        "shows them.",
    )
    p.add_argument("model_dir", help="a captionkit model directory (e.g. RUN_DIR/model)")
    add_dataset_arguments(p)
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument(
        "--out",
        help="write under OUT/eval/<split>/... instead of the run directory (`captionkit report OUT` reads it)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    add_device_argument(p)
    p.add_argument(
        "--metrics",
        help="comma-separated metric names or sets: default (BLEU-1..4, METEOR, ROUGE-L, CIDEr), "
        "fast (the default without METEOR: no 7 s JVM start), coco (the default and SPICE); "
        "object_f1 is added on synthetic data",
    )
    add_ptb_tokenizer_argument(p)
    add_progress_argument(p)
    add_decoding_arguments(p)
    add_dtype_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from captionkit.errors import require

    require("pycocoevalcap", extra="eval")
    from captionkit.evaluation.evaluate import evaluate_model
    from captionkit.evaluation.metrics import resolve_metrics

    resolve_metrics(args.metrics)  # an unknown metric fails now, not after captioning the whole split
    result = evaluate_model(
        args.model_dir,
        args.dataset,
        args.split,
        decoding_overrides(args),
        args.out,
        batch_size=args.batch_size,
        device=args.device,
        metrics=args.metrics,
        tokenizer=args.ptb_tokenizer,
        progress=not args.no_progress,
        dataset_format=args.format,
        dataset_options=parse_options(args.option),
        rerank=rerank_options(args),
        precision=precision_options(args),
    )
    from captionkit.rundir import find_results

    dataset = result.info["dataset"]
    notes = [f"tokenizer: {result.info['tokenizer']}", *result.info["skipped"].values()]
    root = result.out_dir.parents[3]  # ROOT/eval/<split>/<dataset>/<decoding>
    others = [p for p in find_results(root) if p != result.out_dir]
    where = "replaced the same evaluation's earlier results" if result.replaced else "new results"
    kept = f"; {len(others)} other evaluation(s) kept under {root / 'eval'}" if others else ""
    print(
        f"captionkit: evaluated {result.info['images_scored']} {args.split} images of {dataset['name']} "
        f"({dataset['absolute']}); " + "; ".join(notes) + f"; wrote {result.out_dir} ({where}){kept}",
        file=sys.stderr,
    )
    print(json.dumps(result.corpus, indent=2))
    return 0
