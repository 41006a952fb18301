"""Benchmark: time to score 5,000 candidates against 5 references each (all metrics but SPICE), and Java's start share.

Captions come from ../shared/fixtures/flickr8k: image i's five captions are its references and the first caption of
image i+1 is its candidate. JVM start is measured separately as a trivial run of each jar (PTBTokenizer on one line;
METEOR starting and scoring one pair, which includes loading its paraphrase table, as every evaluation must).

    python benchmarks/metrics.py [--items 5000]

Prints a table and writes benchmarks/results/metrics.json and metrics.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

from captionkit.evaluation import ptb_tokenizer
from captionkit.evaluation.metrics import java_available, java_ptb_tokenize, score

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "flickr8k" / "Text" / "Flickr8k.token.txt"
RESULTS = ROOT / "benchmarks" / "results"


def build(items: int) -> tuple[dict[str, list[str]], dict[str, str]]:
    caps: dict[str, list[str]] = defaultdict(list)
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t", 1)
        caps[key.rsplit("#", 1)[0]].append(caption)
    ids = sorted(k for k, v in caps.items() if len(v) == 5)
    if items + 1 > len(ids):
        raise SystemExit(f"the fixture has {len(ids)} images with 5 captions; asked for {items}")
    refs = {ids[i]: caps[ids[i]] for i in range(items)}
    cands = {ids[i]: caps[ids[i + 1]][0] for i in range(items)}
    return refs, cands


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def jvm_starts() -> dict[str, float]:
    """Seconds for a trivial run of each jar (what a JVM start costs before any real work)."""
    from pycocoevalcap.meteor.meteor import Meteor

    _, ptb = timed(java_ptb_tokenize, ["a dog ."])

    def meteor_once() -> None:
        Meteor().compute_score({0: ["a dog runs"]}, {0: ["a dog runs"]})

    _, meteor = timed(meteor_once)
    return {"PTBTokenizer jar": ptb, "METEOR jar": meteor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    args = parser.parse_args()
    if not java_available():
        raise SystemExit("this benchmark measures the Java path (PTBTokenizer, METEOR): install Java")
    refs, cands = build(args.items)
    metrics = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
    starts = jvm_starts()
    result, total = timed(score, refs, cands, metrics)
    lines = [c for v in refs.values() for c in v] + list(cands.values())
    _, tok_java = timed(java_ptb_tokenize, [c for v in refs.values() for c in v], list(cands.values()))
    _, tok_python = timed(ptb_tokenizer.tokenize_lines, lines)
    no_meteor, total_no_meteor = timed(score, refs, cands, [m for m in metrics if m != "METEOR"])
    start_total = sum(starts.values())
    rows = [
        ("score(): all metrics but SPICE, Java tokenizer", total),
        ("score(): without METEOR, Java tokenizer", total_no_meteor),
        ("JVM start: PTBTokenizer (trivial run)", starts["PTBTokenizer jar"]),
        ("JVM start: METEOR (trivial run, paraphrase table)", starts["METEOR jar"]),
        (f"tokenize {len(lines):,} captions: Java (1 JVM)", tok_java),
        (f"tokenize {len(lines):,} captions: pure Python", tok_python),
    ]
    share = start_total / total
    report = {
        "items": args.items,
        "references_per_item": 5,
        "metrics": metrics,
        "tokenizer": result.tokenizer,
        "seconds": {name: round(value, 3) for name, value in rows},
        "java_start_seconds": round(start_total, 3),
        "java_start_share_of_total": round(share, 4),
        "corpus": result.corpus,
        "corpus_without_meteor": no_meteor.corpus,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "note": "2 shared CPU cores; other jobs ran at the same time, so absolute seconds are noisy",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    width = max(len(name) for name, _ in rows)
    table = [f"| {'what':<{width}} | seconds |", f"|{'-' * (width + 2)}|---------|"]
    table += [f"| {name:<{width}} | {value:7.2f} |" for name, value in rows]
    md = (
        f"# Metrics benchmark\n\n{args.items:,} candidates x 5 references (Flickr8k fixture captions), "
        f"{', '.join(metrics)}.\n\n"
        + "\n".join(table)
        + f"\n\nJava start (both jars, trivial runs): {start_total:.2f} s = {share:.1%} of the full scoring time.\n"
        + "\nCorpus scores: "
        + ", ".join(f"{k} {v:.4f}" for k, v in result.corpus.items())
        + "\n"
    )
    (RESULTS / "metrics.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
