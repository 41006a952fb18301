"""`captionkit score CANDIDATES --references REFS`: coco-caption metrics (and CLIPScore) of a results file."""

from __future__ import annotations

import argparse
import json
import sys

from captionkit.cli.common import add_device_argument, add_ptb_tokenizer_argument, resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score a captions file against references (BLEU, METEOR, ROUGE-L, CIDEr, ...)",
        description="Score COCO results against references with pycocoevalcap's protocol. Prints one "
        "JSON object of corpus scores keyed by pycocoevalcap's metric names.",
    )
    p.add_argument(
        "candidates",
        help='COCO results JSON [{"image_id": ..., "caption": ...}] or JSONL (evaluate\'s predictions.json), '
        "or caption --out's JSONL/CSV (matched to the references by image path or file name)",
    )
    p.add_argument(
        "--references",
        required=True,
        help="COCO annotations JSON, or any dataset captionkit reads (folder or caption file) + --split",
    )
    p.add_argument("--split", default="test", help="split of a dataset REFS (default: test; 'all' for every image)")
    p.add_argument("--out", help="also write the corpus scores JSON to FILE")
    p.add_argument("--per-item", help="write {image_id: {metric: score}} to FILE")
    p.add_argument(
        "--metrics",
        help="comma-separated names or sets, e.g. bleu,CIDEr,METEOR or fast (default: BLEU-1..4, METEOR, ROUGE-L, "
        "CIDEr; plus CLIPScore/RefCLIPScore with --clip, object_f1 on synthetic data with scenes.json)",
    )
    add_ptb_tokenizer_argument(p)
    p.add_argument("--image-dir", help="folder holding the images (CLIPScore; default: the dataset's own image paths)")
    # the older spelling; not listed, since `data synth --images` is a count
    p.add_argument("--images", dest="image_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--clip", help="CLIP hub id or local directory for CLIPScore/RefCLIPScore")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="score the images in both files instead of failing on ids found in only one",
    )
    p.add_argument("--batch-size", type=int, default=32, help="CLIP batch size")
    add_device_argument(p, what="device for CLIP: ")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from captionkit.errors import DatasetError, require

    require("pycocoevalcap", extra="eval")
    from captionkit.evaluation.metrics import score
    from captionkit.evaluation.object_f1 import with_object_f1
    from captionkit.evaluation.results import (
        align_candidates,
        match_ids,
        read_candidates,
        read_references,
        write_json,
    )

    refs = read_references(args.references, None if args.split == "all" else args.split, args.image_dir)
    candidates = align_candidates(read_candidates(args.candidates), refs)
    ids, warning = match_ids(refs.captions, candidates, args.references, args.candidates, args.allow_missing)
    if warning:
        print(f"captionkit: warning: {warning}", file=sys.stderr)
    images = None
    if args.clip:
        images = {k: refs.image_paths[k] for k in ids if k in refs.image_paths}
        if len(images) < len(ids):
            raise DatasetError(f"{args.references}: no image path for some ids; pass --image-dir DIR for CLIPScore")
    elif args.image_dir:
        print("captionkit: warning: --image-dir is only used with --clip", file=sys.stderr)
    result = score(
        {k: refs.captions[k] for k in ids},
        {k: candidates[k] for k in ids},
        with_object_f1(args.metrics, refs.scenes),  # the same rule as `evaluate`
        args.ptb_tokenizer,
        scenes={k: refs.scenes[k] for k in ids if k in refs.scenes} if refs.scenes else None,
        images=images,
        clip=args.clip,
        batch_size=args.batch_size,
        device=resolve_device(args.device) if args.clip else "cpu",
    )
    notes = [f"tokenizer: {result.tokenizer}", *result.skipped.values()]
    print(f"captionkit: scored {len(ids)} images; " + "; ".join(notes), file=sys.stderr)
    print(json.dumps(result.corpus, indent=2))
    if args.out:
        write_json(args.out, result.corpus)
    if args.per_item:
        write_json(args.per_item, result.per_item)
    return 0
