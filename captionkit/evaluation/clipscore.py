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
from PIL import Image
from torch import Tensor

W = 2.5
PREFIX = "A photo depicts"


class CLIPScorer:
    """A CLIP model loaded once, scoring batches of (image, caption) pairs."""

    def __init__(self, source: str, device: str = "cpu", batch_size: int = 32, loaded: Any = None) -> None:
        """`loaded`: a CLIPImageEncoder of this CLIP already in memory (e.g. a ClipCap model's encoder): its
        CLIPModel, text tower included, is used instead of loading a second copy."""
        from captionkit.config import ConfigError
        from captionkit.models import hf

        if loaded is not None:
            model, processor, tokenizer = loaded.model, loaded.image_processor, hf.load_clip_tokenizer(source)
        else:
            model, processor, tokenizer = hf.load_clip(source)
        if tokenizer is None:
            raise ConfigError(
                f"CLIP {source!r} has no tokenizer files (vocab.json + merges.txt or tokenizer.json); "
                "CLIPScore needs CLIP's text tower and its tokenizer"
            )
        self.model = model.to(device).eval()
        self.encoder = hf.CLIPImageEncoder(source, self.model, processor)  # CLIP's own preprocessing
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = int(model.config.text_config.max_position_embeddings)

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[str | os.PathLike | Image.Image]) -> Tensor:
        """(N, D) L2-normalised image embeddings of image paths or PIL images."""
        from captionkit.data.images import load_image
        from captionkit.models import hf

        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = [
                im.convert("RGB") if isinstance(im, Image.Image) else load_image(im)
                for im in images[i : i + self.batch_size]
            ]
            pixels = torch.stack([self.encoder.preprocess(im) for im in chunk])
            out.append(hf.clip_image_embeds(self.model, pixels.to(self.device)).float())
        return torch.nn.functional.normalize(torch.cat(out), dim=-1) if out else torch.empty(0)

    @torch.no_grad()
    def text_embeddings(self, captions: Sequence[str]) -> Tensor:
        """(N, D) L2-normalised embeddings of PREFIX + caption (CLIP truncates at its context length)."""
        from captionkit.models import hf

        out = []
        for i in range(0, len(captions), self.batch_size):
            texts = [f"{PREFIX} {c}" for c in captions[i : i + self.batch_size]]
            ids, mask = hf.clip_tokenize(self.tokenizer, texts, self.max_tokens)
            out.append(hf.clip_text_embeds(self.model, ids.to(self.device), mask.to(self.device)).float())
        return torch.nn.functional.normalize(torch.cat(out), dim=-1) if out else torch.empty(0)


def clip_s(image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
    """CLIP-S of matching rows of L2-normalised (N, D) image and text embeddings: W * max(cos, 0), (N,)."""
    return W * (image_embeddings * text_embeddings).sum(-1).clamp_min(0)


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
