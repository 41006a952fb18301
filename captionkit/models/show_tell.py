"""The VGG16 + LSTM "merge" captioner of the Keras Flickr8k tutorials, trained with teacher forcing in one pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from captionkit.errors import ConfigError
from captionkit.models.base import CaptionModel, ModelOutput, TextTokenizer, caption_loss, select_rows
from captionkit.registry import register_model


class WordLSTMModel(CaptionModel):
    """What both LSTM captioners share: a word vocabulary, <bos>-shifted teacher forcing and, optionally, an
    image encoder of their own fine-tuned end to end from pixels (`config.finetune_encoder`)."""

    feature_rank: ClassVar[int]  # dimensions of a batch of image features, batch included
    feature_hint: ClassVar[str]  # what the features should be, for the error message; {C} = config.feature_dim

    def __init__(self, config: Any, pretrained: bool = False) -> None:
        super().__init__(config)
        if config.vocab_size <= 0:
            raise ConfigError(
                f"model ({self.model_type}).vocab_size is {config.vocab_size}: it comes from the word "
                "vocabulary; build the config with config_for_tokenizer(config, tokenizer)"
            )
        self.image_encoder = build_finetune_encoder(config, pretrained) if config.finetune_encoder else None
        # A randomly initialised VGG's fc2 varies by ~0.005 between images: without a LayerNorm the image barely
        # reaches the decoder at the start of end-to-end training (set feature_norm for encoders trained from scratch)
        self.feature_norm = nn.LayerNorm(config.feature_dim) if config.feature_norm else nn.Identity()

    @classmethod
    def build(cls, config: Any, pretrained: bool = True) -> WordLSTMModel:
        return cls(config, pretrained=pretrained)

    @classmethod
    def build_tokenizer(cls, config: Any, train_captions: Iterable[str]) -> TextTokenizer:
        """The word vocabulary of the training captions (words seen fewer than `min_word_count` times -> <unk>)."""
        from captionkit.models.tokenizers import WordVocab

        return WordVocab.build(list(train_captions), min_count=config.min_word_count)

    @classmethod
    def config_for_tokenizer(cls, config: Any, tokenizer: TextTokenizer) -> Any:
        """The config with the vocabulary's size and <bos> id filled in (presets leave vocab_size at 0)."""
        return dataclasses.replace(config, vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.bos_token_id)

    def train(self, mode: bool = True) -> WordLSTMModel:
        """A fully frozen encoder stays in eval mode (no dropout in its FC layers) while the decoder trains."""
        super().train(mode)
        if self.image_encoder is not None and not any(p.requires_grad for p in self.image_encoder.parameters()):
            self.image_encoder.eval()
        return self

    @property
    def input_kind(self) -> str:
        """ "pixels" when the model fine-tunes its own encoder, else "features" (cached encoder outputs)."""
        return "pixels" if self.image_encoder is not None else "features"

    def encode(self, features: Tensor) -> Tensor:
        """Cached features, or pixels (B, 3, H, W) run through the model's own encoder -> (B, *feature_shape),
        layer-normalised over the feature channels when config.feature_norm is set."""
        features = features.to(self.embedding.weight.dtype)
        if self.image_encoder is not None:
            features = self.image_encoder(features)
        if features.dim() != self.feature_rank or features.size(-1) != self.config.feature_dim:
            raise ConfigError(
                f"{self.model_type} expects {self.feature_hint.format(C=self.config.feature_dim)}, "
                f"got image features of shape {tuple(features.shape)}"
            )
        return self.feature_norm(features)

    def decoder_inputs(self, input_ids: Tensor) -> Tensor:
        """(B, T) caption ids + EOS -> (B, T) <bos> + ids[:, :-1]: position t reads token t-1 and predicts token t."""
        bos = input_ids.new_full((input_ids.size(0), 1), self.config.bos_token_id)
        return torch.cat([bos, input_ids[:, :-1]], dim=1)

    def bos_tokens(self, batch_size: int, device: torch.device) -> Tensor:
        return torch.full((batch_size,), self.config.bos_token_id, dtype=torch.long, device=device)

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        return select_rows(state, index)


def build_finetune_encoder(config: Any, pretrained: bool) -> nn.Module:
    """The image encoder named by `config.finetune_encoder`, its last `config.finetune_blocks` blocks trainable.

    A model directory is rebuilt with `pretrained=False`: the spec's `@WEIGHTS` part is dropped, so the encoder
    starts from random weights (no download) and gets its fine-tuned weights from model.safetensors.
    """
    from captionkit.models.encoders import load_encoder, parse_spec

    spec = parse_spec(config.finetune_encoder)
    encoder = load_encoder(str(spec if pretrained else spec.without_weights()))
    if not encoder.fine_tunable:
        raise ConfigError(
            f"model.finetune_encoder={config.finetune_encoder!r}: this encoder cannot be fine-tuned "
            "(only VGG encoders have trainable blocks); set it to null to train on cached features"
        )
    encoder.set_trainable_blocks(config.finetune_blocks)
    shape = tuple(encoder.feature_shape)
    if shape[-1] != config.feature_dim:
        raise ConfigError(
            f"model.feature_dim={config.feature_dim} but encoder {config.finetune_encoder!r} gives "
            f"features of shape {shape}; set model.feature_dim={shape[-1]}"
        )
    return encoder


@dataclass
class ShowTellMergeConfig:
    """Every size of the merge model; vocab_size/bos_token_id are filled from the word vocabulary."""

    vocab_size: int = 0
    bos_token_id: int = 1
    feature_dim: int = 4096  # VGG16 fc2
    embed_dim: int = 256
    hidden_dim: int = 256  # LSTM units == size of the projected image vector they are merged with
    decoder_dim: int = 256  # the dense(relu) layer after the merge
    # How the image vector meets each LSTM output: "add" (the VGG16+LSTM tutorials) or "concat" (Tanti et al. 2018,
    # "Where to put the image in an image caption generator"). After concatenation the dense layer can weigh any
    # image unit against any word unit, which is what naming the shape of the colour just said needs.
    merge: str = "add"
    num_layers: int = 1
    dropout: float = 0.5
    feature_norm: bool = False  # LayerNorm on the image features (for an encoder trained from scratch)
    min_word_count: int = 5
    finetune_encoder: str | None = None  # e.g. "vgg16:fc2@imagenet": train end to end from pixels
    finetune_blocks: int = 0  # how many of the encoder's last blocks are trained


MERGES = {"add": 1, "concat": 2}  # merge -> the dense layer's input width, in hidden_dim units


@register_model("show-tell-merge")
class ShowTellMerge(WordLSTMModel):
    """fc2 -> dropout -> dense(relu); words -> embedding -> dropout -> LSTM; add or concat -> dense(relu) -> vocabulary.

    The image does not enter the LSTM (the "merge" architecture): it is merged with every LSTM output.
    Decoding state: {"h", "c"} (B, num_layers, hidden) and "image" (B, hidden), the projected image vector.
    """

    config_class: ClassVar[type] = ShowTellMergeConfig
    feature_rank: ClassVar[int] = 2
    feature_hint: ClassVar[str] = "(B, {C}) image vectors (VGG16 fc2: (B, 4096))"

    def __init__(self, config: ShowTellMergeConfig, pretrained: bool = False) -> None:
        super().__init__(config, pretrained)
        c = config
        if c.merge not in MERGES:
            raise ConfigError(f"model.merge: {c.merge!r} is not one of {', '.join(MERGES)}")
        self.image_proj = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.feature_dim, c.hidden_dim), nn.ReLU())
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.embed_dropout = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, num_layers=c.num_layers, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(MERGES[c.merge] * c.hidden_dim, c.decoder_dim), nn.ReLU(), nn.Linear(c.decoder_dim, c.vocab_size)
        )

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        image = self.image_proj(self.encode(batch["features"]))  # (B, H)
        words = self.embed_dropout(self.embedding(self.decoder_inputs(batch["input_ids"])))  # (B, T, E)
        hidden, _ = self.lstm(words)  # (B, T, H); padding sits after the caption, so it never reaches it
        logits = self.head(self.merged(hidden, image[:, None].expand_as(hidden)))  # (B, T, V)
        labels = batch.get("labels")
        return ModelOutput(logits=logits, loss=caption_loss(logits, labels) if labels is not None else None)

    def merged(self, hidden: Tensor, image: Tensor) -> Tensor:
        """(..., H) LSTM outputs and image vectors of the same shape -> the dense layer's input."""
        return hidden + image if self.config.merge == "add" else torch.cat([hidden, image], dim=-1)

    def start(self, features: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        image = self.image_proj(self.encode(features))  # (B, H)
        zeros = image.new_zeros(image.size(0), self.config.num_layers, self.config.hidden_dim)
        state = {"h": zeros, "c": zeros, "image": image}
        return self.step(self.bos_tokens(image.size(0), image.device), state)

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        words = self.embed_dropout(self.embedding(tokens[:, None]))  # (B, 1, E)
        # nn.LSTM keeps layers first; the decoding state keeps batch first so select_rows can reorder it
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        hidden, (h, c) = self.lstm(words, hc)
        logits = self.head(self.merged(hidden[:, 0], state["image"]))  # (B, V)
        return logits, {"h": h.transpose(0, 1), "c": c.transpose(0, 1), "image": state["image"]}
