"""The HTML report: one self-contained page comparing runs (metrics, training curves, decoding, examples)."""

from captionkit.report.render import build_report

__all__ = ["build_report"]
