"""`captionkit models import clipcap` (or `import clipcap`): an original ClipCap checkpoint -> a model directory."""

from __future__ import annotations

import argparse
import logging

from captionkit.errors import ConfigError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    # `import clipcap` is kept for scripts; `models import clipcap` is the noun-then-verb spelling (not listed twice)
    register_import_verbs(sub.add_parser("import"))


def register_import_verbs(p: argparse.ArgumentParser) -> None:
    """The `clipcap` verb under `import` and under `models import`."""
    verbs = p.add_subparsers(dest="source", metavar="SOURCE")
    c = verbs.add_parser(
        "clipcap",
        help="a checkpoint of the original ClipCap code (rmokady/CLIP_prefix_caption)",
        description="Convert a state_dict written by the original ClipCap train.py (e.g. "
        "coco_weights.pt) into a model directory. State the architecture it was "
        "trained with; a checkpoint that does not match is refused.",
    )
    c.add_argument("checkpoint", help="the .pt file")
    c.add_argument("--mapping", required=True, choices=["mlp", "transformer"], help="mapping network type")
    c.add_argument("--prefix-length", type=int, required=True, help="k: prefix embeddings (original --prefix_length)")
    c.add_argument(
        "--clip-length",
        type=int,
        default=10,
        help="transformer mapper: CLIP positions (original --prefix_length_clip; default 10)",
    )
    c.add_argument("--num-layers", type=int, default=8, help="transformer mapper layers (default 8)")
    c.add_argument(
        "--prefix-dim",
        type=int,
        default=512,
        help="size of the CLIP embedding (512 for ViT-B/32, 640 for RN50x4; default 512)",
    )
    c.add_argument("--normalize-prefix", action="store_true", help="the model was trained with --normalize_prefix")
    c.add_argument("--gpt2", required=True, help="GPT-2 architecture: hub id, directory or config .json")
    c.add_argument(
        "--clip",
        default=None,
        help="CLIP hub id or directory the features come from (recorded as the "
        "model's encoder, e.g. openai/clip-vit-base-patch32)",
    )
    c.add_argument(
        "--tokenizer",
        default=None,
        help="GPT-2 tokenizer hub id or directory (default: --gpt2; required when --gpt2 is a .json)",
    )
    c.add_argument("--out", required=True, help="model directory to write")
    c.set_defaults(func=run_clipcap)
    p.set_defaults(func=lambda a: p.print_help())


def run_clipcap(args: argparse.Namespace) -> int:
    from captionkit.models.clipcap import ClipCapConfig
    from captionkit.models.clipcap_import import convert_clipcap_checkpoint
    from captionkit.models.hf import GPT2BPETokenizer, gpt2_vocab_size, resolve_source
    from captionkit.models.model_dir import save_model_dir

    tokenizer_source = args.tokenizer or args.gpt2
    if args.tokenizer is None and resolve_source(args.gpt2).is_config:
        raise ConfigError(
            f"--gpt2 {args.gpt2} is a config file without tokenizer files: give --tokenizer "
            "(a GPT-2 tokenizer directory with vocab.json + merges.txt, or a hub id such as gpt2)"
        )
    config = ClipCapConfig(
        prefix_length=args.prefix_length,
        clip_dim=args.prefix_dim,
        mapping=args.mapping,
        clip_length=args.clip_length,
        num_layers=args.num_layers,
        normalize_prefix=args.normalize_prefix,
        gpt2=args.gpt2,
        tokenizer=tokenizer_source,
    )
    model = convert_clipcap_checkpoint(args.checkpoint, config)
    tokenizer = GPT2BPETokenizer.from_pretrained(tokenizer_source)
    if tokenizer.vocab_size > gpt2_vocab_size(model.gpt):
        log.warning(
            "note: the tokenizer has %d tokens, GPT-2 only %d: fine for captioning (generated ids are "
            "in range), not for training on new captions",
            tokenizer.vocab_size,
            gpt2_vocab_size(model.gpt),
        )
    encoder = f"clip:{args.clip}" if args.clip else None
    out = save_model_dir(args.out, model, tokenizer, encoder, extra={"imported_from": str(args.checkpoint)})
    n = sum(p.numel() for p in model.parameters())
    print(
        f"imported {args.checkpoint} -> {out} ({args.mapping} mapper, prefix {args.prefix_length}, "
        f"{n:,} parameters, encoder {encoder or 'not recorded (give --clip)'})"
    )
    return 0
