"""The contracts every captioning model honours: a training forward (batch -> logits and loss) and a decoding step
(start state from image features, step(tokens, state) -> logits, state)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = -100  # label of padding positions: never a real token id


@runtime_checkable
class TextTokenizer(Protocol):
    """Text <-> ids for one model family (GPT-2 BPE for ClipCap, a word vocabulary for the LSTMs)."""

    tokenizer_type: ClassVar[str]
    eos_token_id: int
    pad_token_id: int  # fills padded *inputs*; padded *labels* are IGNORE_INDEX
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """Ids of `text` without special tokens."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens dropped."""

    def save_pretrained(self, directory: str) -> None:
        """Write the tokenizer files into a model directory."""


@dataclass
class ModelOutput:
    """`logits[:, t]` scores `input_ids[:, t]` (the model handles its own start: prefix, <bos>, image state)."""

    logits: Tensor  # (B, T, V)
    loss: Tensor | None = None  # scalar, mean over non-ignored label positions (plus any model regulariser)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. "attention": (B, T, L) weights


class CaptionModel(nn.Module):
    """Base class of registered models.

    Training (`forward`): batch = {"features": (B, *feature_shape) float, "input_ids": (B, T) caption ids + EOS,
    padded with tokenizer.pad_token_id, "labels": (B, T) the same ids with IGNORE_INDEX at padding}; without
    labels a batch may carry "attention_mask" (B, T), 1 on real tokens (padding always follows the caption).

    Decoding (`start`/`step`/`reorder_state`) is what captionkit.decoding drives; it never calls `forward`
    except for the uncached reference path.
    """

    model_type: ClassVar[str]
    config_class: ClassVar[type]
    # What a batch's "features" are: "features" (cached encoder outputs, (B, *feature_shape)) or "pixels"
    # ((B, 3, H, W), for a model that fine-tunes its own encoder end to end: it holds it as `self.image_encoder`,
    # an ImageEncoder, which captionkit.inference and training use)
    input_kind: str = "features"
    # Parameters of the model's own image encoder (input_kind "pixels") start with this (their own learning rate)
    encoder_prefix: ClassVar[str] = "image_encoder."

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def build_tokenizer(cls, config: Any, train_captions: Iterable[str]) -> TextTokenizer:
        """The family's tokenizer for `config`, built from (or trained on) the training captions."""
        raise NotImplementedError(f"model type {cls.model_type!r} does not define build_tokenizer")

    @classmethod
    def config_for_tokenizer(cls, config: Any, tokenizer: TextTokenizer) -> Any:
        """The config with what the tokenizer decides filled in (e.g. vocab_size); by default unchanged."""
        return config

    def pixel_preprocess(self, image: Any) -> Tensor:
        """An RGB PIL image -> (3, H, W) pixels for the model's own encoder (input_kind "pixels" only)."""
        if self.input_kind != "pixels":
            raise NotImplementedError(f"model type {self.model_type!r} reads cached features, not pixels")
        return self.image_encoder.preprocess(image)

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self, features: Tensor) -> tuple[Tensor, Any]:  # pragma: no cover - abstract
        """Image features (B, *feature_shape) -> (logits (B, V) for the first caption token, decoding state)."""
        raise NotImplementedError

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:  # pragma: no cover - abstract
        """Previous tokens (B,) -> (logits (B, V) for the next token, new state)."""
        raise NotImplementedError

    def reorder_state(self, state: Any, index: Tensor) -> Any:  # pragma: no cover - abstract
        """Select/duplicate batch rows of `state` (beam search): row i of the result is row index[i] of `state`."""
        raise NotImplementedError

    @classmethod
    def build(cls, config: Any, pretrained: bool = True) -> CaptionModel:
        """The model for `config`; subclasses that load pretrained parts (GPT-2 by hub id) override this."""
        return cls(config)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer gets: frozen parts (requires_grad=False) are left out and get no optimizer state."""
        return [p for p in self.parameters() if p.requires_grad]


def caption_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over caption positions; IGNORE_INDEX positions (padding) are skipped."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def sequence_log_probs(
    model: nn.Module, features: Tensor, input_ids: Tensor, mask: Tensor, entropy: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Teacher-forced log-probabilities of given captions, with gradients (self-critical training, reranking).

    features (B, *feature_shape), input_ids (B, T) caption ids (+ EOS where the caption ended), mask (B, T) 1 on
    real tokens -> (B, T) log p(input_ids[:, t] | image, earlier tokens), 0 where mask is 0, and with `entropy`
    the (B, T) entropy of each position's next-token distribution (else None). `model` may be a wrapper (DDP)
    whose forward is the contract's.
    """
    out = model({"features": features, "input_ids": input_ids, "attention_mask": mask})
    logits = out.logits.float()  # (B, T, V)
    norm = logits.logsumexp(dim=-1)  # (B, T): no (B, T, V) log-softmax kept unless the entropy is asked for
    token = (logits.gather(-1, input_ids[..., None]).squeeze(-1) - norm) * mask
    if not entropy:
        return token, None
    logp = logits - norm[..., None]
    return token, -(logp.exp() * logp).sum(dim=-1) * mask


def select_rows(state: Any, index: Tensor) -> Any:
    """Apply `index_select(0, index)` to every tensor in a nested tuple/list/dict state (LSTM (h, c), etc.)."""
    if isinstance(state, Tensor):
        return state.index_select(0, index.to(state.device))
    if isinstance(state, (tuple, list)):
        return type(state)(select_rows(s, index) for s in state)
    if isinstance(state, dict):
        return {k: select_rows(v, index) for k, v in state.items()}
    return state


def uncached_logits(model: CaptionModel, features: Tensor, history: Tensor) -> Tensor:
    """Reference path for tests and baselines: recompute the whole sequence to score the next token.

    history (B, n) generated so far -> logits (B, V) for token n, via `forward` on n+1 positions.
    """
    pad = torch.zeros(history.size(0), 1, dtype=torch.long, device=history.device)
    out = model({"features": features, "input_ids": torch.cat([history, pad], dim=1)})
    return out.logits[:, history.size(1)]


def build_model(model_data: dict[str, Any], pretrained: bool = True) -> CaptionModel:
    """Model from plain config data `{"type": name, **config fields}` via the registry (no if/elif over types).

    `pretrained=True` lets a model fetch pretrained parts named in its config (GPT-2 by hub id); a saved model
    directory is rebuilt with `pretrained=False` and then gets its weights from model.safetensors.
    """
    from captionkit.config import from_dict
    from captionkit.registry import get_model_class

    data = dict(model_data)
    cls = get_model_class(data.pop("type"))
    config = from_dict(cls.config_class, data, where=f"model ({cls.model_type})")
    return cls.build(config, pretrained=pretrained)


def build_model_and_tokenizer(
    model_data: dict[str, Any],
    train_captions: list[str],
    tokenizer: TextTokenizer | None = None,
    pretrained: bool = True,
) -> tuple[CaptionModel, TextTokenizer]:
    """The model family builds its tokenizer from the training captions (or a saved one is reused), the
    family fills in what the tokenizer decides (e.g. vocab_size), then the model is built by name
    (`pretrained=False`: no pretrained parts fetched, for weights that are loaded afterwards)."""
    from captionkit.config import from_dict, to_dict
    from captionkit.registry import get_model_class

    cls = get_model_class(model_data["type"])
    config = from_dict(
        cls.config_class, {k: v for k, v in model_data.items() if k != "type"}, where=f"model ({cls.model_type})"
    )
    if tokenizer is None:
        tokenizer = cls.build_tokenizer(config, train_captions)
    config = cls.config_for_tokenizer(config, tokenizer)
    return build_model({"type": cls.model_type, **to_dict(config)}, pretrained=pretrained), tokenizer
