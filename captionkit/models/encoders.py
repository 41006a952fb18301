"""Image encoders behind one interface (image -> features), built from a spec string `KIND:SOURCE`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from captionkit.registry import encoder_kinds, get_encoder_factory


class ImageEncoder(nn.Module):
    """Frozen image encoder. Subclasses set `spec`, `feature_shape` and implement `preprocess` and `forward`.

    `preprocess` runs in DataLoader workers (PIL in, tensor out); `forward` runs batched on the device.
    """

    spec: str  # e.g. "clip:openai/clip-vit-base-patch32", "vgg16:fc2"; stored in manifests and model dirs
    feature_shape: tuple[int, ...]  # (512,) for CLIP ViT-B/32, (4096,) VGG fc2, (196, 512) VGG conv5_3 grid

    def preprocess(self, image: Image.Image) -> Tensor:  # pragma: no cover - abstract
        """An RGB PIL image -> (3, H, W) float pixel tensor."""
        raise NotImplementedError

    def forward(self, pixel_values: Tensor) -> Tensor:  # pragma: no cover - abstract
        """(B, 3, H, W) -> (B, *feature_shape) float32."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What a feature cache manifest records: the spec, the preprocessing and the output shape."""
        return {"spec": self.spec, "feature_shape": list(self.feature_shape)}

    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> Tensor:
        device = next(self.parameters()).device
        pixels = torch.stack([self.preprocess(im) for im in images]).to(device)
        return self(pixels).float()


def parse_spec(spec: str) -> tuple[str, str]:
    kind, sep, source = spec.partition(":")
    if not sep:
        raise ValueError(
            f"encoder spec {spec!r}: expected KIND:SOURCE, e.g. clip:openai/clip-vit-base-patch32 "
            f"or vgg16:fc2; kinds: {', '.join(encoder_kinds())}"
        )
    return kind, source


MAX_UP = 3  # RUN/NAME/model -> RUN/clip is two levels up


def _path_part(source: str) -> tuple[str, str]:
    """(prefix, path-or-name): the part of an encoder source that may be a local path (after the last "@")."""
    head, at, tail = source.rpartition("@")
    return head + at, tail


def relative_spec(spec: str | None, base: str | Path) -> str | None:
    """The spec with an absolute local path in it rewritten relative to `base` ("./x" or "../x") when the path is
    near `base` (at most MAX_UP levels up: a model directory's run and the runs beside it), so a folder of runs can
    be moved or shared whole; other paths and hub ids stay as they are."""
    if not spec or ":" not in spec:
        return spec
    kind, source = parse_spec(spec)
    prefix, tail = _path_part(source)
    if not Path(tail).is_absolute():
        return spec
    relative = os.path.relpath(tail, Path(base).resolve())
    if relative.split(os.sep)[: MAX_UP + 1].count("..") > MAX_UP:
        return spec
    return f"{kind}:{prefix}{relative if relative.startswith('..') else './' + relative}"


def absolute_spec(spec: str | None, base: str | Path) -> str | None:
    """Undo `relative_spec`: a "./x" or "../x" path in the spec is resolved against `base`."""
    if not spec or ":" not in spec:
        return spec
    kind, source = parse_spec(spec)
    prefix, tail = _path_part(source)
    if not tail.startswith(("./", "../")):
        return spec
    return f"{kind}:{prefix}{(Path(base) / tail).resolve()}"


def load_encoder(spec: str, **options: Any) -> ImageEncoder:
    """Build a frozen encoder (eval mode, no grads) from `KIND:SOURCE`; unknown kinds list the valid ones."""
    kind, source = parse_spec(spec)
    encoder = get_encoder_factory(kind)(source, **options)
    encoder.eval().requires_grad_(False)
    return encoder
