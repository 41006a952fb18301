"""The HTML report: one self-contained page comparing runs (metrics, training curves, decoding, examples).

May import evaluation and everything below it; never training (its sibling layer), demo, serve or cli."""

from captionkit.report.render import build_report

__all__ = ["build_report"]
