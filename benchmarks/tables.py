"""The markdown tables the demo benchmarks print and write to benchmarks/results/."""

from __future__ import annotations


def markdown_table(header: list[str], rows: list[dict], text_columns: int = 1) -> str:
    """One row per dict (values in `header` order); the first `text_columns` columns left-aligned, the rest right."""
    align = "|" + "---|" * text_columns + "---:|" * (len(header) - text_columns)
    return "\n".join(
        ["| " + " | ".join(header) + " |", align]
        + ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    )
