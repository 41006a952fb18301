"""`captionkit models list`: the presets a run can start from."""

from __future__ import annotations

import argparse
import json

from captionkit.registry import get_preset, list_presets, model_types


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model presets and types")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    ls = verbs.add_parser("list", help="list presets (name, model type, description)")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(func=run_list)
    p.set_defaults(func=lambda a: p.print_help())


def run_list(args: argparse.Namespace) -> int:
    presets = {
        name: {"type": get_preset(name)["model"]["type"], "description": desc} for name, desc in list_presets().items()
    }
    if args.json:
        print(json.dumps({"presets": presets, "model_types": model_types()}, indent=2))
        return 0
    width = max((len(n) for n in presets), default=10)
    for name, info in presets.items():
        print(f"{name:<{width}}  {info['type']:<18}  {info['description']}")
    return 0
