"""Tiny captioning models for the decoding tests: each implements forward/start/step/reorder_state honestly.

They run in float64 so that cached, uncached, batched and one-at-a-time decoding agree to the last bit after the
decoder's fp32 cast; near-ties could otherwise flip an argmax and make an equality test flaky.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captionkit.models.base import CaptionModel, ModelOutput, caption_loss, select_rows

EOS = 1


@dataclass
class ToyConfig:
    feature_dim: int = 6
    vocab_size: int = 12
    dim: int = 16
    prefix_length: int = 2
    num_heads: int = 2
    num_layers: int = 2
    max_positions: int = 64


class _Block(nn.Module):
    """Pre-LN causal self-attention block whose keys/values are cached between decoding steps."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, t, e = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, e // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # no cache: causal over the whole input; with a cache the single new position sees everything before it
        att = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, e))
        return x + self.mlp(self.ln2(x)), (k, v)


class ToyAttentionCaptioner(CaptionModel):
    """A two-layer GPT-like decoder after a prefix of `prefix_length` embeddings mapped from the features."""

    model_type = "test-toy-attention"
    config_class = ToyConfig
    input_kind = "features"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        c = config
        self.prefix = nn.Linear(c.feature_dim, c.prefix_length * c.dim)
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.dim), nn.Embedding(c.max_positions, c.dim)
        self.blocks = nn.ModuleList(_Block(c.dim, c.num_heads) for _ in range(c.num_layers))
        self.ln_f, self.head = nn.LayerNorm(c.dim), nn.Linear(c.dim, c.vocab_size)

    def _run(self, x: Tensor, pos0: int, past: list | None) -> tuple[Tensor, list]:
        x = x + self.wpe(torch.arange(pos0, pos0 + x.size(1), device=x.device))
        new_past = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[i])
            new_past.append(kv)
        return self.head(self.ln_f(x)), new_past

    def _prefix(self, features: Tensor) -> Tensor:
        return self.prefix(features).view(features.size(0), self.config.prefix_length, self.config.dim)

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        ids = batch["input_ids"]
        x = torch.cat([self._prefix(batch["features"]), self.wte(ids)], dim=1)
        logits, _ = self._run(x, 0, None)
        p = self.config.prefix_length
        logits = logits[:, p - 1 : p - 1 + ids.size(1)]  # position p-1+t scores token t
        labels = batch.get("labels")
        return ModelOutput(logits=logits, loss=None if labels is None else caption_loss(logits, labels))

    def start(self, features: Tensor) -> tuple[Tensor, Any]:
        logits, past = self._run(self._prefix(features), 0, None)
        return logits[:, -1], {"kv": past, "pos": self.config.prefix_length}

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        logits, past = self._run(self.wte(tokens)[:, None], state["pos"], state["kv"])
        return logits[:, -1], {"kv": past, "pos": state["pos"] + 1}

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        return select_rows(state, index)


class ToyGRUCaptioner(CaptionModel):
    """Show-and-tell style: the features give the GRU's initial state, which scores the first token."""

    model_type = "test-toy-gru"
    config_class = ToyConfig
    input_kind = "features"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.init = nn.Linear(config.feature_dim, config.dim)
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.cell = nn.GRUCell(config.dim, config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        ids = batch["input_ids"]
        h = torch.tanh(self.init(batch["features"]))
        logits = []
        for t in range(ids.size(1)):
            logits.append(self.head(h))
            h = self.cell(self.embed(ids[:, t]), h)
        out = torch.stack(logits, dim=1)
        labels = batch.get("labels")
        return ModelOutput(logits=out, loss=None if labels is None else caption_loss(out, labels))

    def start(self, features: Tensor) -> tuple[Tensor, Any]:
        h = torch.tanh(self.init(features))
        return self.head(h), h

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        h = self.cell(self.embed(tokens), state)
        return self.head(h), h

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        return select_rows(state, index)


class BigramCaptioner(CaptionModel):
    """Scripted probabilities: row i of `features` (B, S) one-hot picks start distribution i; then p(next | last)
    comes from a fixed table. Lets a test compute every caption's probability by hand."""

    model_type = "test-bigram"
    config_class = ToyConfig
    input_kind = "features"

    def __init__(self, start_probs: Tensor, table: Tensor) -> None:
        super().__init__(ToyConfig(feature_dim=start_probs.size(0), vocab_size=table.size(1)))
        self.register_buffer("start_logits", start_probs.double().clamp_min(1e-30).log())  # (S, V)
        self.register_buffer("table_logits", table.double().clamp_min(1e-30).log())  # (V, V)
        self.step_rows: list[int] = []  # rows fed to each step call: shows finished rows leave the batch

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        ids = batch["input_ids"]
        first = batch["features"].double() @ self.start_logits  # (B, V)
        rest = self.table_logits[ids[:, :-1]]  # (B, T-1, V)
        return ModelOutput(logits=torch.cat([first[:, None], rest], dim=1))

    def start(self, features: Tensor) -> tuple[Tensor, Any]:
        self.step_rows = []
        return features.double() @ self.start_logits, None

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        self.step_rows.append(tokens.numel())
        return self.table_logits[tokens], None

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        return state


def make_toy(kind: str, seed: int = 0, **config: Any) -> CaptionModel:
    """A toy model with large random weights (std 1 heads) so that captions vary in content and length."""
    torch.manual_seed(seed)
    cls = {"attention": ToyAttentionCaptioner, "gru": ToyGRUCaptioner}[kind]
    model = cls(ToyConfig(**config)).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0 / math.sqrt(p.size(1)) * (3.0 if "head" in name else 1.5))
    return model


def toy_features(n: int, seed: int = 1, dim: int = 6) -> Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


TOY_SEEDS = {"attention": 0, "gru": 1}  # seeds whose greedy captions of toy_features(8) end at varied lengths


def bigram(
    start: dict[int, float] | list[dict[int, float]], table: dict[int, dict[int, float]], vocab_size: int = 8
) -> BigramCaptioner:
    """A BigramCaptioner from sparse probabilities; tokens without a table row continue uniformly."""
    starts = [start] if isinstance(start, dict) else start
    start_probs = torch.zeros(len(starts), vocab_size, dtype=torch.float64)
    for i, row in enumerate(starts):
        for tok, p in row.items():
            start_probs[i, tok] = p
    probs = torch.full((vocab_size, vocab_size), 1.0 / vocab_size, dtype=torch.float64)
    for tok, row in table.items():
        probs[tok] = 0.0
        for nxt, p in row.items():
            probs[tok, nxt] = p
    return BigramCaptioner(start_probs, probs)


def one_hot(rows: list[int], size: int) -> Tensor:
    """Features selecting start distributions `rows` of a BigramCaptioner."""
    return F.one_hot(torch.tensor(rows), size).double()
