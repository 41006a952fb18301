"""CLIP reranking of decoded captions: N candidates per image (the n-best of a beam search of width N, or N samples),
each scored (1 - w) * the model's mean token log-probability + w * CLIP-S (CLIPScore's 2.5 * max(cos, 0)), the best
kept. The CLIP is the model's own encoder when it is one (ClipCap), else the one named by `clip`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from captionkit.decoding import DecodingConfig, beam_search, caption_targets, generate
from captionkit.errors import ConfigError
from captionkit.models.base import CaptionModel, TextTokenizer, sequence_log_probs

RERANK_METHODS = ("clip",)


# RerankConfig's fields a caller may set per request (CLI flags, server form fields).
RERANK_OPTIONS = ("rerank", "rerank_weight", "rerank_candidates", "rerank_clip")


@dataclass
class RerankConfig:
    """How captions are reranked (written beside evaluation results, in decoding.json's "rerank")."""

    method: str = "clip"
    weight: float = 0.5  # w: 0 ranks by the model's log-probability alone, 1 by CLIP-S alone
    candidates: int = 5  # N: beam width (n-best) or samples per image when decoding samples
    clip: str | None = None  # "clip:SOURCE"; None: the model's encoder, which must then be a CLIP

    def __post_init__(self) -> None:
        if self.method not in RERANK_METHODS:
            raise ConfigError(f"rerank={self.method!r}; valid: {', '.join(RERANK_METHODS)}")
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"rerank weight must be in [0, 1], got {self.weight}")
        if self.candidates < 1:
            raise ConfigError(f"rerank candidates must be >= 1, got {self.candidates}")

    @classmethod
    def from_options(
        cls,
        rerank: str | None = None,
        rerank_weight: float | None = None,
        rerank_candidates: int | None = None,
        rerank_clip: str | None = None,
    ) -> RerankConfig | None:
        """The config of the Captioner/CLI options (None when `rerank` is not given)."""
        if rerank is None:
            given = [
                n
                for n, v in (
                    ("rerank_weight", rerank_weight),
                    ("rerank_candidates", rerank_candidates),
                    ("rerank_clip", rerank_clip),
                )
                if v is not None
            ]
            if given:
                raise ConfigError(f"{', '.join(given)} given without rerank='clip'")
            return None
        options = {"weight": rerank_weight, "candidates": rerank_candidates, "clip": rerank_clip}
        return cls(method=rerank, **{k: v for k, v in options.items() if v is not None})


def combined_scores(log_probs: Tensor, clip_scores: Tensor, weight: float) -> Tensor:
    """(1 - w) * mean token log-probability + w * CLIP-S, element-wise."""
    return (1.0 - weight) * log_probs + weight * clip_scores


def decode_candidates(
    model: CaptionModel, features: Tensor, eos_token_id: int, decoding: DecodingConfig, n: int
) -> list[list[list[int]]]:
    """Per image, up to `n` distinct candidate captions (ids without EOS): a beam search's n-best with width n, or
    n samples when `decoding.do_sample`."""
    if decoding.do_sample:
        ids = generate(model, features.repeat_interleave(n, dim=0), eos_token_id, decoding)
        groups = [ids[i * n : (i + 1) * n] for i in range(features.size(0))]
    else:
        config = decoding.replace(num_beams=n)
        groups = beam_search(
            model,
            features,
            eos_token_id,
            num_beams=n,
            max_new_tokens=config.max_new_tokens,
            min_new_tokens=config.min_new_tokens,
            length_penalty=config.length_penalty,
            early_stopping=config.early_stopping,
            beam_scoring=config.beam_scoring,
            temperature=config.temperature,
            repetition_penalty=config.repetition_penalty,
            use_cache=config.use_cache,
        ).beams
    out = []
    for group in groups:
        seen: dict[tuple[int, ...], None] = {}
        for seq in group:
            seen.setdefault(tuple(seq), None)
        out.append([list(seq) for seq in seen])
    return out


@torch.no_grad()
def mean_log_probs(
    model: CaptionModel,
    features: Tensor,
    candidates: list[list[list[int]]],
    tokenizer: TextTokenizer,
    max_new_tokens: int,
) -> Tensor:
    """(total candidates,) mean log-probability per token (EOS included when the caption ended) under `model`."""
    rows = torch.tensor([i for i, group in enumerate(candidates) for _ in group], device=features.device)
    flat = [seq for group in candidates for seq in group]
    ids, mask = caption_targets(flat, tokenizer.eos_token_id, tokenizer.pad_token_id, max_new_tokens, features.device)
    was_training = model.training
    model.eval()
    try:
        token, _ = sequence_log_probs(model, features.index_select(0, rows), ids, mask)
    finally:
        model.train(was_training)
    return token.sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


class ClipReranker:
    """Chooses each image's caption among N candidates by the combined score (module docstring)."""

    def __init__(self, config: RerankConfig, scorer: Any, features_are_clip: bool) -> None:
        self.config = config
        self.scorer = scorer  # captionkit.inference.clip_scorer.CLIPScorer
        self.features_are_clip = features_are_clip  # the model reads this CLIP's image embeddings: reuse them

    @classmethod
    def for_encoder(cls, config: RerankConfig, encoder: Any, device: torch.device | str) -> ClipReranker:
        """The CLIP of `config.clip`, else `encoder` itself when it is a CLIP (a ClipCap model's); a model whose
        encoder has no text tower (VGG) without `config.clip` is a ConfigError."""
        from captionkit.inference.clip_scorer import CLIPScorer
        from captionkit.models import hf
        from captionkit.models.encoders import parse_spec

        if config.clip:
            spec = parse_spec(config.clip)
            if spec.kind != "clip":
                raise ConfigError(
                    f"rerank clip {config.clip!r}: expected a CLIP spec 'clip:SOURCE' (hub id or "
                    "directory), e.g. 'clip:openai/clip-vit-base-patch32'"
                )
            return cls(config, CLIPScorer(spec.source, device=str(device)), features_are_clip=False)
        if isinstance(encoder, hf.CLIPImageEncoder):
            return cls(
                config,
                CLIPScorer(parse_spec(encoder.spec).source, device=str(device), loaded=encoder),
                features_are_clip=True,
            )
        spec = getattr(encoder, "spec", type(encoder).__name__)
        raise ConfigError(
            f"CLIP reranking needs a CLIP with a text tower and this model's encoder {spec!r} has "
            "none: give the CLIP to rerank with as rerank_clip 'clip:SOURCE' (a hub id or directory, "
            "e.g. 'clip:openai/clip-vit-base-patch32')"
        )

    def choose(
        self,
        model: CaptionModel,
        tokenizer: TextTokenizer,
        features: Tensor,
        images: Sequence[Image.Image],
        decoding: DecodingConfig,
    ) -> list[list[int]]:
        """The best candidate's ids for each image (features (B, *feature_shape), images the same B images)."""
        candidates = decode_candidates(model, features, tokenizer.eos_token_id, decoding, self.config.candidates)
        logp = mean_log_probs(model, features, candidates, tokenizer, decoding.max_new_tokens).float().cpu()
        if self.features_are_clip:  # (B, D) the CLIP image embeddings the model read
            image_emb = torch.nn.functional.normalize(features.float(), dim=-1).cpu()
        else:
            image_emb = self.scorer.image_embeddings(list(images)).cpu()
        texts = [tokenizer.decode(seq).strip() for group in candidates for seq in group]
        rows = torch.tensor([i for i, group in enumerate(candidates) for _ in group])
        from captionkit.inference.clip_scorer import clip_s

        clip = clip_s(image_emb.index_select(0, rows), self.scorer.text_embeddings(texts).cpu())
        scores = combined_scores(logp, clip, self.config.weight)
        best, start = [], 0
        for group in candidates:
            best.append(group[int(scores[start : start + len(group)].argmax())])
            start += len(group)
        return best
