"""CLIPScore and RefCLIPScore (Hessel et al. 2021), reference-free caption scores from any CLIP, batched.

CLIP-S(c, v) = w * max(cos(E_text("A photo depicts " + c), E_image(v)), 0) with w = 2.5.
RefCLIP-S(c, R, v) = harmonic mean of CLIP-S(c, v) and max(max_r cos(E_text(c), E_text(r)), 0), references
encoded with the same prefix (as the authors' implementation does). Corpus scores are means over images.
The CLIP comes from a hub id or a local directory through captionkit.models.hf (the one transformers seam);
torchmetrics' CLIPScore is not used: it breaks with transformers 5 (it expects a tensor from get_image_features,
which returns an output object there).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from captionkit.inference.clip_scorer import CLIPScorer, clip_s


def harmonic_mean(a: Tensor, b: Tensor) -> Tensor:
    """Element-wise 2ab / (a + b), 0 where both are 0."""
    total = a + b
    return torch.where(total > 0, 2 * a * b / total.clamp_min(1e-12), torch.zeros_like(total))


def clip_scores(
    clip: str | CLIPScorer,
    images: Mapping[Hashable, str | os.PathLike],
    candidates: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> dict[str, tuple[float, dict[Hashable, float]]]:
    """{"CLIPScore": (corpus mean, {id: score})} and, when `references` are given, "RefCLIPScore" likewise.

    `images` and `candidates` share ids (the ids of `candidates` are scored)."""
    scorer = clip if isinstance(clip, CLIPScorer) else CLIPScorer(clip, device=device, batch_size=batch_size)
    keys = list(candidates)
    img = scorer.image_embeddings([images[k] for k in keys])  # (N, D)
    cand = scorer.text_embeddings([candidates[k] for k in keys])  # (N, D)
    per_item = clip_s(img, cand)  # (N,)
    out: dict[str, tuple[float, dict[Hashable, Any]]] = {"CLIPScore": _pack(keys, per_item)}
    if references is not None:
        flat = [r for k in keys for r in references[k]]
        refs = scorer.text_embeddings(flat)  # (sum of refs, D)
        best, start = [], 0
        for k in keys:
            n = len(references[k])
            best.append((refs[start : start + n] @ cand[len(best)]).max().clamp_min(0))
            start += n
        out["RefCLIPScore"] = _pack(keys, harmonic_mean(per_item, torch.stack(best)))
    return out


def _pack(keys: list[Hashable], values: Tensor) -> tuple[float, dict[Hashable, float]]:
    items = {k: float(v) for k, v in zip(keys, values.tolist())}
    return (sum(items.values()) / len(items) if items else 0.0), items
