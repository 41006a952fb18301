"""Length and diversity of a set of generated captions: how reward hacking shows (self-critical training that games
CIDEr writes longer, more repetitive captions), next to the metrics that compare with references."""

from __future__ import annotations

from collections.abc import Iterable


def caption_statistics(captions: Iterable[str]) -> dict[str, float]:
    """{"mean_length": words per caption, "distinct_1", "distinct_2": distinct unigrams (bigrams) over all unigrams
    (bigrams) of all captions} (Li et al. 2016's distinct-n over the whole set); words split on whitespace, the
    final period dropped."""
    words = [c.lower().replace(" .", "").rstrip(".").split() for c in captions]
    if not words:
        return {"mean_length": 0.0, "distinct_1": 0.0, "distinct_2": 0.0}
    stats = {"mean_length": sum(map(len, words)) / len(words)}
    for n in (1, 2):
        grams = [tuple(w[i : i + n]) for w in words for i in range(len(w) - n + 1)]
        stats[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    return stats
