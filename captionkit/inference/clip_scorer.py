"""CLIP-S scoring of (image, caption) pairs with any CLIP (Hessel et al. 2021): the scorer that the CLIPScore metric
(`captionkit.evaluation.clipscore`) and CLIP reranking (`captionkit.inference.rerank`) share.

CLIP-S(c, v) = w * max(cos(E_text("A photo depicts " + c), E_image(v)), 0) with w = 2.5. The CLIP comes from a hub
id or a local directory through captionkit.models.hf (the one transformers seam)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from captionkit.data.images import load_image
from captionkit.errors import ConfigError
from captionkit.models import hf

W = 2.5
PREFIX = "A photo depicts"


class CLIPScorer:
    """A CLIP model loaded once, scoring batches of (image, caption) pairs."""

    def __init__(self, source: str, device: str = "cpu", batch_size: int = 32, loaded: Any = None) -> None:
        """`loaded`: a CLIPImageEncoder of this CLIP already in memory (e.g. a ClipCap model's encoder): its
        CLIPModel, text tower included, is used instead of loading a second copy."""
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
        out = []
        for i in range(0, len(captions), self.batch_size):
            texts = [f"{PREFIX} {c}" for c in captions[i : i + self.batch_size]]
            ids, mask = hf.clip_tokenize(self.tokenizer, texts, self.max_tokens)
            out.append(hf.clip_text_embeds(self.model, ids.to(self.device), mask.to(self.device)).float())
        return torch.nn.functional.normalize(torch.cat(out), dim=-1) if out else torch.empty(0)


def clip_s(image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
    """CLIP-S of matching rows of L2-normalised (N, D) image and text embeddings: W * max(cos, 0), (N,)."""
    return W * (image_embeddings * text_embeddings).sum(-1).clamp_min(0)
