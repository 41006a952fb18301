"""Show, Attend and Tell (Xu et al. 2015): a soft-attention LSTM decoder over the VGG16 conv5_3 grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from captionkit.errors import ConfigError
from captionkit.models.base import IGNORE_INDEX, ModelOutput, caption_loss
from captionkit.models.show_tell import WordLSTMModel
from captionkit.registry import register_model


@dataclass
class ShowAttendTellConfig:
    """Every size of the attention model; vocab_size/bos_token_id are filled from the word vocabulary."""

    vocab_size: int = 0
    bos_token_id: int = 1
    feature_dim: int = 512  # C of the (L, C) grid: 512 for VGG16 conv5_3 (L = 14 x 14 = 196 at 224 px)
    embed_dim: int = 512
    attention_dim: int = 512
    hidden_dim: int = 512
    dropout: float = 0.5
    deep_output: bool = True  # Xu et al.'s deep output layer; False: a linear layer on the hidden state
    attention_reg: float = 1.0  # lambda of the doubly stochastic attention regulariser
    # The LSTM's first state: "mean", Xu et al.'s, from the mean feature (the decoder starts knowing the whole image
    # as a bag of grid cells), or "learned", one learned state for every image (all it learns of the image then comes
    # through its attention, which has to find each object it names)
    init_state: str = "mean"
    feature_norm: bool = False  # LayerNorm over the C channels of each location (for an encoder trained from scratch)
    min_word_count: int = 5
    finetune_encoder: str | None = None  # e.g. "vgg16:conv5_3@imagenet": train end to end from pixels
    finetune_blocks: int = 0  # how many of the encoder's last blocks are trained


class AdditiveAttention(nn.Module):
    """att_l = w^T tanh(W_f f_l + W_h h); alpha = softmax over the L locations; context = sum_l alpha_l f_l."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.feature_att = nn.Linear(feature_dim, attention_dim)
        self.hidden_att = nn.Linear(hidden_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, features: Tensor, feature_att: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, L, C), feature_att(features) (B, L, A), h (B, H) -> context (B, C), alpha (B, L)."""
        scores = self.score(torch.tanh(feature_att + self.hidden_att(h)[:, None])).squeeze(-1)  # (B, L)
        alpha = scores.softmax(dim=-1)
        return torch.bmm(alpha[:, None], features).squeeze(1), alpha


@register_model("show-attend-tell")
class ShowAttendTell(WordLSTMModel):
    """LSTMCell over [word embedding, beta * context], h/c initialised from the mean feature.

    Decoding state: {"h", "c"} (B, hidden), "features" (B, L, C) and "feature_att" (B, L, A), the feature half of
    the attention computed once per image.
    """

    config_class: ClassVar[type] = ShowAttendTellConfig
    feature_rank: ClassVar[int] = 3
    feature_hint: ClassVar[str] = "(B, L, {C}) grid features (VGG16 conv5_3: (B, 196, 512))"

    def __init__(self, config: ShowAttendTellConfig, pretrained: bool = False) -> None:
        super().__init__(config, pretrained)
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        if c.init_state == "mean":
            self.init_h = nn.Sequential(nn.Linear(c.feature_dim, c.hidden_dim), nn.Tanh())
            self.init_c = nn.Sequential(nn.Linear(c.feature_dim, c.hidden_dim), nn.Tanh())
        elif c.init_state == "learned":
            self.h0, self.c0 = nn.Parameter(torch.zeros(c.hidden_dim)), nn.Parameter(torch.zeros(c.hidden_dim))
        else:
            raise ConfigError(f"model.init_state={c.init_state!r}: use mean or learned")
        self.attention = AdditiveAttention(c.feature_dim, c.hidden_dim, c.attention_dim)
        self.f_beta = nn.Linear(c.hidden_dim, 1)  # the gating scalar beta_t of Xu et al. (sec. 4.2.1)
        self.cell = nn.LSTMCell(c.embed_dim + c.feature_dim, c.hidden_dim)
        self.dropout = nn.Dropout(c.dropout)
        if c.deep_output:  # p(y_t) ~ exp(L_o tanh(E y_{t-1} + L_h h_t + L_z z_t))
            self.out_hidden = nn.Linear(c.hidden_dim, c.embed_dim)
            self.out_context = nn.Linear(c.feature_dim, c.embed_dim)
            self.out = nn.Linear(c.embed_dim, c.vocab_size)
        else:
            self.out = nn.Linear(c.hidden_dim, c.vocab_size)

    def initial_state(self, features: Tensor) -> dict[str, Tensor]:
        if self.config.init_state == "mean":
            mean = features.mean(dim=1)  # (B, C)
            h, c = self.init_h(mean), self.init_c(mean)
        else:
            h, c = (p.expand(features.size(0), -1) for p in (self.h0, self.c0))
        return {
            "h": h,
            "c": c,
            "features": features,
            "feature_att": self.attention.feature_att(features),
        }

    def advance(self, word: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Embedded previous word (B, E) -> logits (B, V), attention (B, L) used for this word, next state."""
        context, alpha = self.attention(state["features"], state["feature_att"], state["h"])
        context = torch.sigmoid(self.f_beta(state["h"])) * context  # (B, 1) * (B, C): the gated context z_t
        h, c = self.cell(torch.cat([word, context], dim=-1), (state["h"], state["c"]))
        if self.config.deep_output:
            logits = self.out(self.dropout(torch.tanh(word + self.out_hidden(h) + self.out_context(context))))
        else:
            logits = self.out(self.dropout(h))
        return logits, alpha, {**state, "h": h, "c": c}

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        state = self.initial_state(self.encode(batch["features"]))
        words = self.embedding(self.decoder_inputs(batch["input_ids"]))  # (B, T, E)
        logits, alphas = [], []
        for t in range(words.size(1)):
            step_logits, alpha, state = self.advance(words[:, t], state)
            logits.append(step_logits)
            alphas.append(alpha)
        logits_t = torch.stack(logits, dim=1)  # (B, T, V)
        attention = torch.stack(alphas, dim=1)  # (B, T, L)
        out = ModelOutput(logits=logits_t, extras={"attention": attention})
        labels = batch.get("labels")
        if labels is not None:
            reg = attention_regularizer(attention, labels)
            out.extras["attention_reg"] = reg.detach()
            out.loss = caption_loss(logits_t, labels) + self.config.attention_reg * reg
        return out

    def start(self, features: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        state = self.initial_state(self.encode(features))
        return self.step(self.bos_tokens(state["h"].size(0), state["h"].device), state)

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        logits, _, state = self.advance(self.embedding(tokens), state)
        return logits, state


def attention_regularizer(attention: Tensor, labels: Tensor) -> Tensor:
    """Doubly stochastic regulariser sum_l (1 - sum_t alpha_tl)^2 over each caption's real (non-padding) words.

    Xu et al. add it per caption to the caption's *summed* log-likelihood; captionkit's loss is a mean over words,
    so the per-caption sums are divided by the number of words as well: lambda keeps the paper's weight.
    attention (B, T, L), labels (B, T) -> scalar.
    """
    mask = (labels != IGNORE_INDEX).to(attention.dtype)  # (B, T)
    coverage = (attention * mask[..., None]).sum(dim=1)  # (B, L)
    return ((1.0 - coverage) ** 2).sum() / mask.sum().clamp(min=1.0)


@torch.no_grad()
def attention_for(model: ShowAttendTell, features: Tensor, ids: Sequence[Sequence[int]]) -> list[Tensor]:
    """Attention weights (T_i, L) per generated caption: row t is where the model looked to produce word t.

    `ids` are generated captions without EOS (what captionkit.decoding returns); they are re-read with teacher
    forcing, which gives exactly the weights of the decoding steps that produced them.
    """
    lengths = [len(seq) for seq in ids]
    input_ids = torch.zeros(len(ids), max(max(lengths), 1), dtype=torch.long, device=features.device)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        attention = model({"features": features, "input_ids": input_ids}).extras["attention"]
    finally:
        model.train(was_training)
    return [attention[i, :n].float().cpu() for i, n in enumerate(lengths)]
