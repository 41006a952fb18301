"""`captionkit demo`: the main job on the built-in synthetic data (offline, CPU), then the metric table."""

from __future__ import annotations

import argparse
import json

from captionkit.cli.common import add_json_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="make the demo data, train and evaluate both model families, write the report",
        description="Runs every step of a real captioning project on the built-in synthetic data. "
        "Finished steps are reused when run again.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--config", help="YAML/JSON file with DemoConfig fields")
    p.add_argument("--models", help="comma-separated subset of the demo presets")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a DemoConfig field, e.g. --set images=600 --set clip.epochs=5",
    )
    p.add_argument(
        "--pretrain-encoders",
        action="store_true",
        help="instead of the demo: pretrain the demo's encoders as classifiers on the labelled scene "
        "stream (fixed seed, resumable under OUT/encoders) and install them into the package "
        "(captionkit/pretrained/), where the demo reads them",
    )
    add_json_argument(p, "print OUT/metrics.json's content (one JSON object) instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from captionkit.config import load_config
    from captionkit.errors import require

    require("accelerate", extra="train")
    from captionkit.demo import DemoConfig, format_table, run_demo

    if args.pretrain_encoders:
        from captionkit.demo.encoders import DemoEncodersConfig, pretrain_demo_encoders

        installed = pretrain_demo_encoders(
            f"{args.out}/encoders", load_config(DemoEncodersConfig, args.config, args.overrides)
        )
        for name, path in installed.items():
            print(f"installed the demo's {name} encoder: {path}")
        return 0
    overrides = list(args.overrides) + [f"out={args.out}"]
    if args.models:
        overrides.append(f"models=[{args.models}]")
        wanted = args.models.split(",")  # fine-tune only the asked-for models
        overrides.append(f"scst=[{','.join(p for p in DemoConfig().scst if p in wanted)}]")
    config = load_config(DemoConfig, args.config, overrides)
    results = run_demo(config)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print()
    print(format_table(results))
    print(f"\nwrote {config.out}/metrics.json and {config.out}/report.html")
    print(f"the blind baseline's caption for every image: {results['baselines']['blind'].get('caption')!r}")
    return 0
