"""A toy captioner, tokenizer and encoder honouring captionkit's contracts, plus a tiny Flickr8k-layout dataset:
the training engine's tests run in seconds and do not depend on any real model family."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from captionkit.models.base import CaptionModel, ModelOutput, caption_loss, select_rows
from captionkit.models.encoders import ImageEncoder
from captionkit.registry import register_encoder, register_model, register_tokenizer

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 30),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "purple": (140, 30, 160),
    "orange": (250, 140, 20),
}


@register_tokenizer("toy-words")
class ToyWords:
    """Whitespace words; <pad>=0 <bos>=1 <eos>=2 <unk>=3."""

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.ids = {w: i for i, w in enumerate(self.words)}
        self.pad_token_id, self.bos_token_id, self.eos_token_id, self.unk_token_id = 0, 1, 2, 3

    @classmethod
    def build(cls, captions: Iterable[str]) -> ToyWords:
        return cls(sorted({w for c in captions for w in c.split()}))

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(w, self.unk_token_id) for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.words[i] for i in ids if i >= len(self.SPECIALS))

    def save_pretrained(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "toy_words.json").write_text(json.dumps(self.words[len(self.SPECIALS) :]))

    @classmethod
    def from_pretrained(cls, directory: str) -> ToyWords:
        return cls(json.loads((Path(directory) / "toy_words.json").read_text()))


def preprocess(image: Image.Image) -> Tensor:
    """(3, 8, 8) pixels in [0, 1]."""
    return torch.from_numpy(np.asarray(image.resize((8, 8)), dtype=np.float32)).permute(2, 0, 1) / 255.0


class ToyRGBEncoder(ImageEncoder):
    """Frozen encoder: the mean colour of the image, (3,)."""

    spec = "toyrgb:mean"
    feature_shape = (3,)

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))  # extraction reads the device from a parameter

    def preprocess(self, image: Image.Image) -> Tensor:
        return preprocess(image)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return pixel_values.mean(dim=(2, 3)) * self.scale


@register_encoder("toyrgb")
def toy_rgb(source: str, **options: Any) -> ToyRGBEncoder:
    return ToyRGBEncoder()


class ToyPixelEncoder(nn.Module):
    """A trainable encoder the model owns (input_kind "pixels"): 1x1 conv, then the spatial mean, (B, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel_size=1)

    def preprocess(self, image: Image.Image) -> Tensor:
        return preprocess(image)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.conv(pixels).mean(dim=(2, 3))


@dataclass
class ToyConfig:
    vocab_size: int = 0  # filled from the tokenizer
    feature_dim: int = 3
    hidden: int = 16
    dropout: float = 0.0
    freeze_image: bool = False  # the image projection is frozen (constant 0.5 weights, no gradients)
    pixels: bool = False  # own a trainable encoder, trained end to end from pixels
    delay: float = 0.0  # seconds slept per forward: lets a test kill a run mid-way


@register_model("toy-train")
class ToyCaptioner(CaptionModel):
    """h_t = tanh(W_img f + E[token_{t-1}]); logits_t = head(dropout(h_t)): a bigram model conditioned on the image."""

    config_class: ClassVar[type] = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.image = nn.Linear(config.feature_dim, config.hidden)
        self.embed = nn.Embedding(config.vocab_size, config.hidden)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        self.image_encoder = ToyPixelEncoder() if config.pixels else None
        if config.freeze_image:
            nn.init.constant_(self.image.weight, 0.5)
            nn.init.constant_(self.image.bias, 0.5)
            self.image.requires_grad_(False)

    @property
    def input_kind(self) -> str:
        return "pixels" if self.image_encoder is not None else "features"

    @classmethod
    def build_tokenizer(cls, config: ToyConfig, train_captions: Iterable[str]) -> ToyWords:
        return ToyWords.build(train_captions)

    @classmethod
    def config_for_tokenizer(cls, config: ToyConfig, tokenizer: ToyWords) -> ToyConfig:
        return dataclasses.replace(config, vocab_size=tokenizer.vocab_size)

    def image_vector(self, features: Tensor) -> Tensor:
        if self.image_encoder is not None:
            features = self.image_encoder(features)
        return self.image(features)  # (B, H)

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        if self.config.delay:
            time.sleep(self.config.delay)
        ids = batch["input_ids"]
        prev = torch.cat([torch.ones_like(ids[:, :1]), ids[:, :-1]], dim=1)  # <bos>=1 then the shifted caption
        hidden = torch.tanh(self.image_vector(batch["features"])[:, None] + self.embed(prev))  # (B, T, H)
        logits = self.head(self.drop(hidden))
        labels = batch.get("labels")
        return ModelOutput(logits=logits, loss=caption_loss(logits, labels) if labels is not None else None)

    def start(self, features: Tensor) -> tuple[Tensor, Any]:
        image = self.image_vector(features)
        return self.step(torch.ones(image.size(0), dtype=torch.long, device=image.device), {"image": image})

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        hidden = torch.tanh(state["image"] + self.embed(tokens))
        return self.head(hidden), state

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        return select_rows(state, index)


def write_toy_dataset(
    root: Path, train: int = 8, dev: int = 2, test: int = 1, captions_per_image: int = 2, dev_words: str | None = None
) -> Path:
    """Flickr8k layout (Images/, Text/Flickr8k.token.txt, Text/Flickr_8k.{train,dev,test}Images.txt) of solid-colour
    8x8 JPEGs whose captions all have 4 words ("a red square ."), so every batch has the same number of tokens.
    `dev_words` replaces every dev caption (e.g. words never seen in training)."""
    images, text = root / "Images", root / "Text"
    images.mkdir(parents=True, exist_ok=True)
    text.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    lines, splits = [], {"train": [], "dev": [], "test": []}
    for i in range(train + dev + test):
        split = "train" if i < train else "dev" if i < train + dev else "test"
        colour = names[i % len(names)]
        file = f"{1000 + i}_toy.jpg"
        Image.new("RGB", (16, 16), COLOURS[colour]).save(images / file, quality=95)
        nouns = ["square", "block", "patch"]
        for k in range(captions_per_image):
            caption = dev_words if split == "dev" and dev_words else f"a {colour} {nouns[k % len(nouns)]} ."
            lines.append(f"{file}#{k}\t{caption}")
        splits[split].append(file)
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for split, files in splits.items():
        (text / f"Flickr_8k.{split}Images.txt").write_text("\n".join(files) + "\n")
    return root


def toy_config(dataset: Path, out: Path, **train: Any) -> dict[str, Any]:
    """A run config (plain data) for the toy model: few steps, dev loss only, no workers."""
    model = train.pop("model", {})
    settings = {
        "epochs": 2,
        "batch_size": 4,
        "lr": 0.05,
        "num_workers": 0,
        "log_every_steps": 1,
        "seed": 0,
        "max_grad_norm": 1.0,
        **train,
    }
    return {
        "model": {"type": "toy-train", **model},
        "encoder": "toyrgb:mean",
        "dataset": str(dataset),
        "out": str(out),
        "train": settings,
        "eval": {"metrics": [], "batch_size": 8},
    }
