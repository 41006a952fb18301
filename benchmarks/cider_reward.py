"""Benchmark: CIDEr-D reward throughput (captions/s) of captionkit's batched CiderD against pycocoevalcap.

Setting of self-critical training on Flickr8k: the references of every fixture image with five captions are the
training references (document frequencies computed once); a batch is B images x K sampled captions, the samples
being captions of other images. Rows:
- pycocoevalcap CiderScorer, same document frequencies: its per-caption Python scoring with the document
  frequencies and log(#images) of all training references set once (the comparison with the same values);
- pycocoevalcap Cider().compute_score per batch: what a caller of the public API gets (document frequencies of the
  batch's own references, so the values differ: timing only);
- captionkit CiderD on PTB-tokenized text, and on raw text (its pure-Python PTB tokenizer included).
Every row scores the same batches; the captionkit values are checked equal to the same-frequency row (1e-6).

    python benchmarks/cider_reward.py [--batches 20 --images-per-batch 50 --samples 5]

Prints a table and writes benchmarks/results/cider_reward.json and cider_reward.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from machine import load_state, state_at_start

from captionkit.evaluation import ptb_tokenizer
from captionkit.evaluation.cider_reward import CiderD

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "flickr8k" / "Text" / "Flickr8k.token.txt"
RESULTS = ROOT / "benchmarks" / "results"


def load() -> dict[str, list[str]]:
    caps: dict[str, list[str]] = defaultdict(list)
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t", 1)
        caps[key.rsplit("#", 1)[0]].append(caption)
    return {k: v for k, v in caps.items() if len(v) == 5}


def coco_same_df(refs_tok: dict[str, list[str]]):
    """A pycocoevalcap CiderScorer scoring function with the document frequencies of all `refs_tok` set once."""
    from pycocoevalcap.cider.cider_scorer import CiderScorer, cook_refs, cook_test

    full = CiderScorer(n=4, sigma=6.0)
    for refs in refs_tok.values():
        full.crefs.append(cook_refs(refs))
    full.compute_doc_freq()

    def score(image_ids: list[str], captions: list[str]) -> np.ndarray:
        scorer = CiderScorer(n=4, sigma=6.0)
        scorer.document_frequency = full.document_frequency
        # compute_cider sets ref_len = log(len(crefs)): the list reports the training set's size instead
        scorer.crefs = _Sized([cook_refs(refs_tok[k]) for k in image_ids], len(full.crefs))
        scorer.ctest = [cook_test(c) for c in captions]
        return np.asarray(scorer.compute_cider())

    return score


class _Sized(list):
    """A list whose len() is a given number (read only by CiderScorer.compute_cider's ref_len)."""

    def __init__(self, items: list, size: int) -> None:
        super().__init__(items)
        self.size = size

    def __len__(self) -> int:
        return self.size


def coco_public(refs_tok: dict[str, list[str]]):
    from pycocoevalcap.cider.cider import Cider

    def score(image_ids: list[str], captions: list[str]) -> np.ndarray:
        # the public API takes one caption per image id: K samples become K id variants
        gts = {f"{k}#{i}": refs_tok[k] for i, k in enumerate(image_ids)}
        res = {f"{k}#{i}": [c] for i, (k, c) in enumerate(zip(image_ids, captions))}
        return np.asarray(Cider().compute_score(gts, res)[1])

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--images-per-batch", type=int, default=50)
    parser.add_argument("--samples", type=int, default=5, help="captions per image (K)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many passes over the batches")
    args = parser.parse_args()
    start = state_at_start()
    caps = load()
    keys = sorted(caps)
    refs_tok = ptb_tokenizer.tokenize(caps)
    rng = random.Random(0)
    batches = []
    for _ in range(args.batches):
        images = rng.sample(keys, args.images_per_batch)
        ids = [k for k in images for _ in range(args.samples)]
        raw = [caps[rng.choice(keys)][rng.randrange(5)] for _ in ids]
        batches.append((ids, raw, ptb_tokenizer.tokenize_lines(raw)))
    captions = sum(len(b[0]) for b in batches)

    start = time.perf_counter()
    ours_raw = CiderD(caps)
    init_raw = time.perf_counter() - start
    start = time.perf_counter()
    ours_tok = CiderD(refs_tok, tokenized=True)
    init_tok = time.perf_counter() - start
    same_df = coco_same_df(refs_tok)
    public = coco_public(refs_tok)
    runs = {
        "pycocoevalcap CiderScorer, same document frequencies (tokenized)": lambda b: same_df(b[0], b[2]),
        "pycocoevalcap Cider().compute_score per batch (tokenized)": lambda b: public(b[0], b[2]),
        "captionkit CiderD (tokenized)": lambda b: ours_tok(b[0], b[2]),
        "captionkit CiderD (raw text, PTB tokenization included)": lambda b: ours_raw(b[0], b[1]),
    }
    seconds, values = {}, {}
    for _ in range(args.repeats):  # interleaved passes, best of
        for name, fn in runs.items():
            start = time.perf_counter()
            values[name] = np.concatenate([fn(b) for b in batches])
            seconds[name] = min(seconds.get(name, float("inf")), time.perf_counter() - start)
    reference = values["pycocoevalcap CiderScorer, same document frequencies (tokenized)"]
    max_diff = {name: float(np.abs(values[name] - reference).max()) for name in runs if name.startswith("captionkit")}
    assert all(d <= 1e-6 for d in max_diff.values()), max_diff
    base = seconds["pycocoevalcap CiderScorer, same document frequencies (tokenized)"]
    rows = [(name, s, captions / s, base / s) for name, s in seconds.items()]
    header = (
        f"{args.batches} batches of {args.images_per_batch} images x {args.samples} captions "
        f"({captions:,} captions), references: {len(caps):,} Flickr8k fixture images x 5 captions; "
        f"best of {args.repeats} interleaved passes; 1 process, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, {load_state(start)}. "
        f"Set-up once: CiderD on raw references {init_raw:.2f} s, on tokenized {init_tok:.2f} s."
    )
    table = ["| scorer | seconds | captions/s | speed-up |", "|---|---:|---:|---:|"]
    table += [f"| {name} | {s:.3f} | {rate:,.0f} | {up:.1f}x |" for name, s, rate, up in rows]
    md = (
        "# CIDEr-D reward benchmark\n\n`python benchmarks/cider_reward.py`\n\n"
        + header
        + "\n\n"
        + "\n".join(table)
        + "\n\ncaptionkit's values equal the same-document-frequency pycocoevalcap row to "
        + f"{max(max_diff.values()):.1e} (max abs difference).\n"
    )
    report = {
        "batches": args.batches,
        "images_per_batch": args.images_per_batch,
        "samples": args.samples,
        "captions": captions,
        "reference_images": len(caps),
        "repeats": args.repeats,
        "setup_seconds": {"raw": round(init_raw, 3), "tokenized": round(init_tok, 3)},
        "rows": [
            {"scorer": n, "seconds": round(s, 4), "captions_per_s": round(r, 1), "speed_up": round(u, 2)}
            for n, s, r, u in rows
        ],
        "max_abs_difference_vs_pycocoevalcap": max_diff,
        "load_average": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "note": load_state(start),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cider_reward.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "cider_reward.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
