"""ClipCap (Mokady et al. 2021): a mapping network turns a CLIP image embedding into k GPT-2 prefix embeddings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captionkit.errors import ConfigError
from captionkit.models import hf
from captionkit.models.base import IGNORE_INDEX, CaptionModel, ModelOutput, TextTokenizer, caption_loss
from captionkit.registry import register_model

TRAIN_BPE = "train-bpe"  # ClipCapConfig.tokenizer value: learn a small GPT-2-style BPE from the training captions


@dataclass
class ClipCapConfig:
    """Architecture of a ClipCap model. Module names follow the original code, so its checkpoints load by key."""

    prefix_length: int = 10  # k: prefix embeddings fed to GPT-2
    clip_dim: int = 512  # D: size of the CLIP image embedding (the encoder's projection_dim)
    mapping: str = "mlp"  # "mlp" (Linear -> Tanh -> Linear) or "transformer"
    clip_length: int = 10  # transformer mapper: positions the CLIP vector is projected to
    num_layers: int = 8  # transformer mapper: pre-LN blocks
    num_heads: int = 8  # transformer mapper: attention heads (the original always uses 8)
    mlp_hidden: int | None = None  # MLP mapper hidden size; None: k*E/2 as in the original
    normalize_prefix: bool = False  # L2-normalise the CLIP vector before the mapper (original --normalize_prefix)
    gpt2: str = "gpt2"  # hub id | directory | config .json | captionkit:tiny-gpt2
    gpt2_config: dict[str, Any] | None = None  # GPT-2 architecture, filled in when built: a model dir needs no hub
    freeze_gpt2: bool = False  # True: GPT-2 gets no gradients, no optimizer state and stays in eval mode
    tokenizer: str = ""  # "": GPT-2's BPE from `gpt2`; "train-bpe": learnt from train captions; or a hub id / dir

    def __post_init__(self) -> None:
        where = "model (clipcap)"
        if self.mapping not in MAPPERS:
            raise ConfigError(f"{where}.mapping={self.mapping!r}; valid: {', '.join(MAPPERS)}")
        for name in ("prefix_length", "clip_dim", "clip_length", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name} must be >= 1, got {getattr(self, name)}")


class MLPMapper(nn.Module):
    """CLIP vector (B, D) -> (B, k*E): Linear(D, k*E/2) -> Tanh -> Linear(k*E/2, k*E) (original `MLP`)."""

    def __init__(self, config: ClipCapConfig, embed_dim: int) -> None:
        super().__init__()
        out = config.prefix_length * embed_dim
        hidden = config.mlp_hidden or out // 2
        self.model = nn.Sequential(nn.Linear(config.clip_dim, hidden), nn.Tanh(), nn.Linear(hidden, out))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class MapperAttention(nn.Module):
    """Full (non-causal) multi-head self-attention with the original's fused key/value projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"model (clipcap).num_heads={num_heads} does not divide GPT-2's embedding size {dim}")
        self.num_heads = num_heads
        self.to_queries = nn.Linear(dim, dim, bias=False)
        self.to_keys_values = nn.Linear(dim, 2 * dim, bias=False)  # output: [keys (E) | values (E)]
        self.project = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, e = x.shape
        h = self.num_heads
        q = self.to_queries(x).view(b, n, h, e // h).transpose(1, 2)  # (B, h, L, E/h)
        k, v = self.to_keys_values(x).view(b, n, 2, h, e // h).permute(2, 0, 3, 1, 4)  # 2 x (B, h, L, E/h)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(E/h)) v, no mask
        return self.project(out.transpose(1, 2).reshape(b, n, e))


class MapperMLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class MapperBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); no dropout."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MapperAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MapperMLP(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MapperTransformer(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MapperBlock(dim, num_heads) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerMapper(nn.Module):
    """CLIP vector (B, D) -> Linear -> (B, clip_length, E), followed by a learnt constant (k, E); after the
    transformer the last k positions are the prefix (original `TransformerMapper`)."""

    def __init__(self, config: ClipCapConfig, embed_dim: int) -> None:
        super().__init__()
        self.clip_length = config.clip_length
        self.linear = nn.Linear(config.clip_dim, config.clip_length * embed_dim)
        self.prefix_const = nn.Parameter(torch.randn(config.prefix_length, embed_dim))
        self.transformer = MapperTransformer(embed_dim, config.num_heads, config.num_layers)

    def forward(self, x: Tensor) -> Tensor:
        b = x.size(0)
        projected = self.linear(x).view(b, self.clip_length, -1)  # (B, clip_length, E)
        const = self.prefix_const.unsqueeze(0).expand(b, -1, -1)  # (B, k, E)
        out = self.transformer(torch.cat([projected, const], dim=1))
        return out[:, self.clip_length :].reshape(b, -1)  # (B, k*E)


MAPPERS: dict[str, type[nn.Module]] = {"mlp": MLPMapper, "transformer": TransformerMapper}


@register_model("clipcap")
class ClipCapModel(CaptionModel):
    """CLIP embedding -> mapper -> k prefix embeddings -> GPT-2, which continues the prefix with the caption.

    Decoding state is GPT-2's key/value cache after the prefix and the tokens so far. `step` extends it and
    `reorder_state` reorders it in place (no per-step copy of the whole cache): after either call use only the
    state it returned, never the one passed in.
    """

    config_class = ClipCapConfig

    def __init__(self, config: ClipCapConfig, gpt: nn.Module | None = None) -> None:
        super().__init__(config)
        self.gpt = gpt if gpt is not None else hf.load_gpt2(config.gpt2, pretrained=False, config=config.gpt2_config)
        self.config = dataclasses.replace(config, gpt2_config=hf.gpt2_config_dict(self.gpt))
        self.embed_dim = hf.gpt2_embedding_size(self.gpt)
        self.clip_project = MAPPERS[config.mapping](config, self.embed_dim)
        if config.freeze_gpt2:
            self.gpt.requires_grad_(False)
            self.gpt.eval()

    @classmethod
    def build(cls, config: ClipCapConfig, pretrained: bool = True) -> ClipCapModel:
        """GPT-2 weights from the hub id / directory when `pretrained`; else from `gpt2_config` (random init)."""
        return cls(config, gpt=hf.load_gpt2(config.gpt2, pretrained=pretrained, config=config.gpt2_config))

    @classmethod
    def build_tokenizer(cls, config: ClipCapConfig, train_captions: Iterable[str]) -> TextTokenizer:
        """GPT-2's BPE (from `tokenizer`, else from the `gpt2` hub id / dir), or with `tokenizer="train-bpe"` a
        byte-level BPE of GPT-2's vocab size learnt from the training captions (tiny from-scratch GPT-2s)."""
        vocab_size = int(hf.gpt2_architecture(config.gpt2, config.gpt2_config)["vocab_size"])
        if config.tokenizer == TRAIN_BPE:
            tokenizer = hf.GPT2BPETokenizer.train(train_captions, vocab_size)
        elif config.tokenizer or not hf.resolve_source(config.gpt2).is_config:
            tokenizer = hf.GPT2BPETokenizer.from_pretrained(config.tokenizer or config.gpt2)
        else:
            raise ConfigError(
                f"model (clipcap).tokenizer: GPT-2 source {config.gpt2!r} is a bare config with no "
                f"tokenizer files; set it to a GPT-2 tokenizer dir or hub id, or to {TRAIN_BPE!r}"
            )
        if tokenizer.vocab_size > vocab_size:
            raise ConfigError(
                f"model (clipcap).tokenizer has {tokenizer.vocab_size} tokens but GPT-2 "
                f"({config.gpt2}) has vocab_size {vocab_size}: ids would not fit"
            )
        return tokenizer

    def train(self, mode: bool = True) -> ClipCapModel:
        super().train(mode)
        if self.config.freeze_gpt2:
            self.gpt.eval()  # a frozen GPT-2 has no dropout, as in the original ClipCaptionPrefix
        return self

    def prefix(self, features: Tensor) -> Tensor:
        """(B, D) CLIP embeddings -> (B, k, E) GPT-2 prefix embeddings."""
        if features.size(-1) != self.config.clip_dim:
            raise ConfigError(
                f"image features have size {features.size(-1)} but model (clipcap).clip_dim is "
                f"{self.config.clip_dim}: the encoder does not match the model"
            )
        x = features.reshape(features.size(0), -1).to(self.clip_project_dtype)
        if self.config.normalize_prefix:
            x = x / x.norm(dim=-1, keepdim=True)
        return self.clip_project(x).view(x.size(0), self.config.prefix_length, self.embed_dim)

    @property
    def clip_project_dtype(self) -> torch.dtype:
        return next(self.clip_project.parameters()).dtype

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        features, input_ids = batch["features"], batch["input_ids"]
        labels = batch.get("labels")
        k, (b, t) = self.config.prefix_length, input_ids.shape
        embeds = torch.cat([self.prefix(features), hf.gpt2_embed(self.gpt, input_ids)], dim=1)  # (B, k+T, E)
        mask = batch.get("attention_mask")
        if mask is None and labels is not None:
            mask = labels != IGNORE_INDEX  # padding is exactly where labels are ignored
        if mask is not None:
            mask = torch.cat([mask.new_ones(b, k), mask], dim=1).long()  # (B, k+T): the prefix is always seen
        hidden, _ = hf.gpt2_hidden(self.gpt, embeds, attention_mask=mask)
        # Position k-1+t reads the last prefix slot (t=0) or token t-1, so it scores token t.
        logits = hf.gpt2_logits(self.gpt, hidden[:, k - 1 : k - 1 + t])  # (B, T, V)
        return ModelOutput(logits=logits, loss=caption_loss(logits, labels) if labels is not None else None)

    def start(self, features: Tensor) -> tuple[Tensor, Any]:
        hidden, cache = hf.gpt2_hidden(self.gpt, self.prefix(features), cache=hf.new_kv_cache(self.gpt))
        return hf.gpt2_logits(self.gpt, hidden[:, -1]), cache

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        embeds = hf.gpt2_embed(self.gpt, tokens.view(-1, 1))  # (B, 1, E)
        hidden, cache = hf.gpt2_hidden(self.gpt, embeds, cache=state)
        return hf.gpt2_logits(self.gpt, hidden[:, -1]), cache

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        return hf.reorder_kv_cache(state, index)
