"""Image encoders behind one interface (image -> features), built from a spec string `KIND:SOURCE`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from captionkit.errors import ConfigError
from captionkit.registry import encoder_kinds, get_encoder_factory


class ImageEncoder(nn.Module):
    """Frozen image encoder. Subclasses set `spec`, `feature_shape` and implement `preprocess` and `forward`.

    `preprocess` runs in DataLoader workers (PIL in, tensor out); `forward` runs batched on the device.
    """

    spec: str  # e.g. "clip:openai/clip-vit-base-patch32", "vgg16:fc2"; stored in manifests and model dirs
    feature_shape: tuple[int, ...]  # (512,) for CLIP ViT-B/32, (4096,) VGG fc2, (196, 512) VGG conv5_3 grid
    fine_tunable: bool = False  # True when `set_trainable_blocks` can unfreeze it for end-to-end training

    def preprocess(self, image: Image.Image) -> Tensor:  # pragma: no cover - abstract
        """An RGB PIL image -> (3, H, W) float pixel tensor."""
        raise NotImplementedError

    def forward(self, pixel_values: Tensor) -> Tensor:  # pragma: no cover - abstract
        """(B, 3, H, W) -> (B, *feature_shape) float32."""
        raise NotImplementedError

    def set_trainable_blocks(self, n: int) -> ImageEncoder:
        """Unfreeze the top `n` blocks for end-to-end fine-tuning (encoders with `fine_tunable` only)."""
        raise ConfigError(f"encoder {self.spec!r} cannot be fine-tuned end to end")

    def describe(self) -> dict[str, Any]:
        """What a feature cache manifest records: the spec, the preprocessing and the output shape."""
        return {"spec": self.spec, "feature_shape": list(self.feature_shape)}

    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> Tensor:
        device = next(self.parameters()).device
        pixels = torch.stack([self.preprocess(im) for im in images]).to(device)
        return self(pixels).float()


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder spec `KIND:SOURCE`, SOURCE = `BASE[@WEIGHTS]`: `clip:openai/clip-vit-base-patch32` (BASE a hub id
    or directory), `vgg16:fc2@imagenet` (BASE the feature, WEIGHTS "imagenet" or a weights file)."""

    kind: str
    source: str = ""

    @property
    def base(self) -> str:
        return self.source.partition("@")[0]

    @property
    def weights(self) -> str:
        """The part after "@" ("" when there is none)."""
        return self.source.partition("@")[2]

    def without_weights(self) -> EncoderSpec:
        return EncoderSpec(self.kind, self.base)

    def local_part(self) -> str:
        """The part that may be a local path: the weights when given, else the whole source."""
        return self.weights or self.source

    def with_local_part(self, path: str) -> EncoderSpec:
        return EncoderSpec(self.kind, f"{self.base}@{path}" if self.weights else path)

    def __str__(self) -> str:
        return f"{self.kind}:{self.source}" if self.source else self.kind


def parse_spec(spec: str, source_required: bool = True) -> EncoderSpec:
    """The one parser of `KIND:SOURCE[@WEIGHTS]` (the kind alone when not `source_required`, e.g. `vgg16`)."""
    kind, sep, source = str(spec).partition(":")
    if (source_required and not (sep and source)) or not kind:
        raise ConfigError(
            f"encoder spec {spec!r}: expected KIND:SOURCE, e.g. clip:openai/clip-vit-base-patch32 "
            f"or vgg16:fc2; kinds: {', '.join(encoder_kinds())}"
        )
    return EncoderSpec(kind, source)


MAX_UP = 3  # RUN/NAME/model -> RUN/clip is two levels up


def relative_spec(spec: str | None, base: str | Path) -> str | None:
    """The spec with an absolute local path in it rewritten relative to `base` ("./x" or "../x") when the path is
    near `base` (at most MAX_UP levels up: a model directory's run and the runs beside it), so a folder of runs can
    be moved or shared whole; other paths and hub ids stay as they are."""
    if not spec or ":" not in spec:
        return spec
    parsed = parse_spec(spec)
    tail = parsed.local_part()
    if not Path(tail).is_absolute():
        return spec
    relative = os.path.relpath(tail, Path(base).resolve())
    if relative.split(os.sep)[: MAX_UP + 1].count("..") > MAX_UP:
        return spec
    return str(parsed.with_local_part(relative if relative.startswith("..") else "./" + relative))


def absolute_spec(spec: str | None, base: str | Path) -> str | None:
    """Undo `relative_spec`: a "./x" or "../x" path in the spec is resolved against `base`."""
    if not spec or ":" not in spec:
        return spec
    parsed = parse_spec(spec)
    tail = parsed.local_part()
    if not tail.startswith(("./", "../")):
        return spec
    return str(parsed.with_local_part(str((Path(base) / tail).resolve())))


def load_encoder(spec: str, **options: Any) -> ImageEncoder:
    """Build a frozen encoder (eval mode, no grads) from `KIND:SOURCE`; unknown kinds list the valid ones."""
    parsed = parse_spec(spec)
    encoder = get_encoder_factory(parsed.kind)(parsed.source, **options)
    encoder.eval().requires_grad_(False)
    return encoder
