"""`captionkit report RUN_DIR... --out report.html`: one self-contained HTML page comparing runs."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML page comparing evaluated runs",
        description="Compare evaluations: metrics table (with each row's dataset and image count), training "
        "curves, decoding settings, example images with every model's caption, each from the dataset the "
        "captions were scored on. Rows scored on different data are flagged. Images are embedded: the page "
        "works offline.",
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        help="run directories (or `evaluate --out` folders): every evaluation of --split in them; "
        "or results folders RUN/eval/<split>/<dataset>/<decoding>",
    )
    p.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--split", help="evaluated split to show (default: test, else the first evaluated)")
    p.add_argument("--examples", type=int, default=12, help="images in the example grid (default: 12)")
    p.add_argument("--extremes", type=int, default=3, help="best and worst examples per model (default: 3)")
    p.add_argument("--title", default="captionkit report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from captionkit.report import build_report

    out = build_report(
        args.run_dirs, args.out, split=args.split, examples=args.examples, extremes=args.extremes, title=args.title
    )
    print(f"captionkit: wrote {out}", file=sys.stderr)
    return 0
