"""The markdown tables the demo benchmarks print and write to benchmarks/results/."""

from __future__ import annotations

import json
from pathlib import Path


def markdown_table(header: list[str], rows: list[dict], text_columns: int = 1) -> str:
    """One row per dict (values in `header` order); the first `text_columns` columns left-aligned, the rest right."""
    align = "|" + "---|" * text_columns + "---:|" * (len(header) - text_columns)
    return "\n".join(
        ["| " + " | ".join(header) + " |", align]
        + ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    )


def write_results(out: Path, name: str, report: dict, table: str) -> None:
    """OUT/NAME.json (the whole report) and OUT/NAME.md (the table the script prints)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text(table, encoding="utf-8")
