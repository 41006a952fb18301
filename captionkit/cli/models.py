"""`captionkit models list | import clipcap`: the presets a run can start from; models trained by other code."""

from __future__ import annotations

import argparse
import json

from captionkit.cli.common import add_json_argument


def register(sub: argparse._SubParsersAction) -> None:
    from captionkit.cli.importer import register_import_verbs

    p = sub.add_parser("models", help="list model presets; import models trained by other code")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    ls = verbs.add_parser("list", help="list presets: name, model type, the data each is meant for")
    add_json_argument(ls)
    ls.set_defaults(func=run_list)
    imp = verbs.add_parser("import", help="import a model trained by other code (same as `captionkit import`)")
    register_import_verbs(imp)
    p.set_defaults(func=lambda a: p.print_help())


def run_list(args: argparse.Namespace) -> int:
    import captionkit
    from captionkit.registry import model_types

    presets = captionkit.list_models()
    if args.json:
        print(json.dumps({"presets": presets, "model_types": model_types()}, indent=2))
        return 0
    rows = [("PRESET", "TYPE", "MEANT FOR")] + [(n, p["type"], p["meant_for"]) for n, p in presets.items()]
    name_width = max(len(r[0]) for r in rows)
    type_width = max(len(r[1]) for r in rows)
    for name, model_type, meant_for in rows:
        print(f"{name:<{name_width}}  {model_type:<{type_width}}  {meant_for}")
    return 0
