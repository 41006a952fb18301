"""Options shared by several commands (dataset, device, --json, --no-progress, decoding), so each is defined once."""

from __future__ import annotations

import argparse
from typing import Any


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("decoding")
    g.add_argument("--num-beams", type=int, default=None, help="beam size (1 = greedy; default 1)")
    g.add_argument("--max-new-tokens", type=int, default=None, help="longest caption in tokens (default 30)")
    g.add_argument("--min-new-tokens", type=int, default=None, help="EOS is not allowed before this many tokens")
    g.add_argument("--length-penalty", type=float, default=None, help="beam score = logprob / length**penalty")
    g.add_argument(
        "--beam-scoring",
        choices=["default", "clipcap"],
        default=None,
        help="'clipcap' reproduces the original ClipCap beam search ranking",
    )
    g.add_argument("--do-sample", action="store_true", default=None, help="sample instead of greedy/beam")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--seed", type=int, default=None, help="seed for sampling")
    r = parser.add_argument_group("reranking")
    r.add_argument(
        "--rerank",
        choices=["clip"],
        default=None,
        help="decode N candidates per image (beam n-best, or N samples with --do-sample) and keep the "
        "best by (1 - w) * mean token log-prob + w * CLIP-S (2.5 * max(cos, 0))",
    )
    r.add_argument("--rerank-weight", type=float, default=None, metavar="W", help="w in [0, 1] (default 0.5)")
    r.add_argument("--rerank-candidates", type=int, default=None, metavar="N", help="candidates per image (default 5)")
    r.add_argument(
        "--rerank-clip",
        default=None,
        metavar="SPEC",
        help="the CLIP to rerank with, 'clip:HUB_ID_OR_DIR' (default: the model's encoder, when it is a "
        "CLIP; needed for VGG-family models)",
    )


def rerank_options(args: argparse.Namespace) -> dict[str, Any]:
    """The reranking options the user gave, as Captioner.caption keyword arguments."""
    from captionkit.inference.rerank import RERANK_OPTIONS  # lazy: the CLI starts without torch

    return {k: getattr(args, k) for k in RERANK_OPTIONS if getattr(args, k, None) is not None}


def decoding_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only the decoding options the user actually gave (the rest keep DecodingConfig's defaults)."""
    from captionkit.decoding import DECODING_OPTIONS  # lazy: the CLI starts without torch

    return {k: getattr(args, k) for k in DECODING_OPTIONS if getattr(args, k, None) is not None}


DATASET_HELP = (
    "dataset: a folder or caption file (Flickr8k, COCO, Karpathy, CSV, ...), WebDataset shards (a folder, "
    "a brace pattern such as data/cc/{00000..00099}.tar, or a list file), parquet files, a Hugging Face "
    "save_to_disk folder, or hf:NAME"
)


def add_dataset_arguments(
    parser: argparse.ArgumentParser, required: bool = True, positional: bool = False, dest: str = "dataset"
) -> None:
    """--dataset PATH, --format and the repeatable --option KEY=VALUE of the dataset readers. positional: PATH may
    also come as the first argument (`data check PATH`); `dataset_path(args)` returns whichever was given."""
    if positional:
        parser.add_argument("path", nargs="?", metavar="PATH", help="the dataset, as PATH or --dataset PATH")
        parser.add_argument("--dataset", dest=dest, default=None, help=DATASET_HELP)
    else:
        parser.add_argument("--dataset", dest=dest, required=required, help=DATASET_HELP)
    parser.add_argument(
        "--format",
        default="auto",
        help="flickr8k, flickr30k, kaggle, karpathy, coco, csv, tsv, jsonl, webdataset, parquet, hf (default: detect)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset reader option, e.g. caption_column=text, image_column=jpg, split=train, "
        "restval=null (repeatable; values parsed as YAML)",
    )


def parse_options(items: list[str]) -> dict[str, Any]:
    """--option KEY=VALUE items -> {key: value}, values parsed as YAML (true, null, 0.8, [a, b])."""
    import yaml

    from captionkit.errors import ConfigError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE, e.g. --option restval=null")
        try:
            options[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--option {item!r}: cannot parse the value ({exc.__class__.__name__})") from exc
    return options


def dataset_path(args: argparse.Namespace) -> str:
    """The dataset of a command that takes it as PATH or --dataset PATH (exactly one of them)."""
    from captionkit.errors import ConfigError

    given = [p for p in (getattr(args, "path", None), args.dataset) if p is not None]
    if len(given) != 1:
        raise ConfigError("give the dataset once, as PATH or as --dataset PATH")
    return given[0]


def add_device_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    """--device, the same default everywhere: None, which the library resolves (cuda if available, else cpu)."""
    parser.add_argument(
        "--device", default=None, help=f"{what}cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)"
    )


def resolve_device(device: str | None) -> str:
    """--device checked against this machine, else the library's one default-device rule (cuda if available, else
    cpu); a device that does not exist here is a one-line error naming the ones that do."""
    from captionkit.models.devices import resolve_device as resolve  # lazy: the CLI starts without torch

    return str(resolve(device))


def add_json_argument(parser: argparse.ArgumentParser, what: str = "print one JSON object instead of text") -> None:
    """--json: the one flag for machine-readable output."""
    parser.add_argument("--json", action="store_true", help=what)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """--no-progress: no progress bars (for logs and scripts)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_ptb_tokenizer_argument(parser: argparse.ArgumentParser) -> None:
    """--ptb-tokenizer: how captions are tokenized for the metrics (not a model's tokenizer). The old spelling
    --tokenizer still works here, where no model tokenizer could be meant; it is no longer listed."""
    choices = ["auto", "java", "python"]
    parser.add_argument(
        "--ptb-tokenizer",
        choices=choices,
        default="auto",
        help="PTB tokenizer for the metrics: pycocoevalcap's Java one or the pure-Python one (auto: Java if installed)",
    )
    parser.add_argument(
        "--tokenizer", dest="ptb_tokenizer", choices=choices, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def add_dtype_arguments(parser: argparse.ArgumentParser, dtype_flag: str = "--dtype", max_pixels: bool = True) -> None:
    """--dtype / --quantize (the number format inference runs in) and, for commands that read images, --max-pixels.
    Read back with precision_options(args)."""
    parser.add_argument(
        dtype_flag,
        dest="precision_dtype",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="number format of the model and encoder: float32 (default), bfloat16 (CPUs with AVX-512 BF16/AMX, "
        "GPUs), float16 (GPU only)",
    )
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="int8: the decoder's linear layers in dynamic int8 (CPU, float32 only)",
    )
    if max_pixels:
        parser.add_argument(
            "--max-pixels",
            type=int,
            default=None,
            help="largest image accepted, in pixels (default: PIL's limit, about 89 million)",
        )


def precision_options(args: argparse.Namespace) -> dict[str, Any]:
    """The --dtype / --quantize / --max-pixels options the user gave, as captionkit.load keywords."""
    given = {
        "dtype": args.precision_dtype,
        "quantize": args.quantize,
        "max_pixels": getattr(args, "max_pixels", None),
    }
    return {k: v for k, v in given.items() if v is not None}
