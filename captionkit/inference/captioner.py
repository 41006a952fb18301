"""The Python API: a loaded model directory that captions images (paths or PIL images) or encoder feature tensors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from captionkit.data.records import ShardImage
from captionkit.data.text import tidy_caption
from captionkit.decoding import DecodingConfig, generate
from captionkit.errors import ConfigError
from captionkit.models import hf
from captionkit.models.base import CaptionModel, TextTokenizer
from captionkit.models.devices import resolve_device
from captionkit.models.encoders import ImageEncoder, load_encoder
from captionkit.models.precision import Precision, apply_precision, cast_encoder, floating_dtype, resolve_precision

ImageInput = Union[str, "os.PathLike[str]", Image.Image, ShardImage]  # ShardImage: an image inside a dataset shard


class Captioner:
    """A captioning model with its tokenizer, image encoder and default decoding settings.

    `caption(images)` runs the whole chain in batches: load -> preprocess -> encode -> generate -> decode.
    `encode(images)` gives what the model reads as features: the encoder's outputs, or for a model that owns its
    encoder (`input_kind == "pixels"`) the preprocessed pixels. `generate(features)` and `decode(ids)` are the
    last two steps on their own, e.g. for features from a cache.
    """

    def __init__(
        self,
        model: CaptionModel,
        tokenizer: TextTokenizer,
        encoder: ImageEncoder | str | None = None,
        config: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        decoding: DecodingConfig | None = None,
        precision: Precision | None = None,
        max_pixels: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = precision or Precision()
        self.model = apply_precision(model.to(self.device).eval(), self.precision)
        self.max_pixels = max_pixels  # larger images are refused (None: PIL's limit, about 89 million pixels)
        self.tokenizer = tokenizer
        self.config = config or {}  # the model directory's config.json
        self.decoding = decoding or DecodingConfig()  # defaults that per-call options override
        self._encoder = encoder  # a spec string until first needed
        self._rerankers: dict[str, Any] = {}  # CLIP spec ("" = the model's encoder) -> ClipReranker

    @classmethod
    def from_dir(
        cls, model_dir: str | os.PathLike[str], device: str | torch.device | None = None, **options: Any
    ) -> Captioner:
        """Load a model directory (config.json + model.safetensors + tokenizer files).

        Options: `encoder`, an ImageEncoder or spec "KIND:SOURCE" used instead of the one config.json names (e.g.
        a local CLIP directory where the stored hub id cannot be reached); `dtype` ("float32", "bfloat16", or
        "float16" on a GPU) for the model and its encoder; `quantize="int8"` (CPU, float32: the decoder's linear
        layers in dynamic int8); `max_pixels`, the largest image accepted; any DecodingConfig field, as this
        captioner's decoding defaults (`captionkit.load(dir, num_beams=5)`).
        """
        from captionkit.models.model_dir import load_model_dir

        encoder = options.pop("encoder", None)
        device = resolve_device(device)
        precision = resolve_precision(options.pop("dtype", None), options.pop("quantize", None), device)
        max_pixels = options.pop("max_pixels", None)
        if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
            raise ConfigError(f"max_pixels must be a positive whole number of pixels, got {max_pixels!r}")
        decoding = DecodingConfig().replace(**options)
        with hf.weights_follow():  # no random init of weights the directory's safetensors replace
            loaded = load_model_dir(model_dir, device=device)
        return cls(
            loaded.model,
            loaded.tokenizer,
            encoder if encoder is not None else loaded.encoder,
            loaded.config,
            device,
            decoding,
            precision,
            max_pixels,
        )

    @property
    def input_kind(self) -> str:
        return self.model.input_kind

    @property
    def encoder(self) -> ImageEncoder:
        """The image encoder; built on first use, so decoding feature tensors never loads (or downloads) it."""
        if self.input_kind == "pixels":
            return self.model.image_encoder  # the model fine-tunes its own encoder
        if self._encoder is None:
            raise ConfigError(
                "this model directory names no image encoder (config.json 'encoder' is null); pass "
                "encoder='KIND:SOURCE' to captionkit.load, or caption feature tensors with generate()"
            )
        if isinstance(self._encoder, str):
            self._encoder = cast_encoder(load_encoder(self._encoder).to(self.device), self.precision)
        return self._encoder

    def encode(self, images: Sequence[ImageInput]) -> Tensor:
        """Images (paths or PIL) -> (B, *feature_shape) model inputs on the captioner's device."""
        encoder = self.encoder
        pixels = torch.stack([encoder.preprocess(self.load_image(image)) for image in images]).to(self.device)
        if self.input_kind == "pixels":
            return pixels  # decoding casts them to the model's dtype
        with torch.inference_mode():
            return encoder(pixels.to(floating_dtype(encoder))).float()

    def load_image(self, image: ImageInput) -> Image.Image:
        """A path or shard image decoded safely (ImageLoadError naming it; over `max_pixels` refused); a PIL image
        used as RGB."""
        return _load(image, self.max_pixels)

    def generate(
        self,
        features: Tensor,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        eos_token_id: int | None = None,
        **decoding: Any,
    ) -> list[list[int]]:
        """Caption ids (without EOS) for (B, *feature_shape) features; unset options keep this captioner's defaults.

        `eos_token_id` defaults to the tokenizer's; a negative id disables stopping (fixed-length output).
        """
        given = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
        config = self.decoding.replace(**{k: v for k, v in given.items() if v is not None}, **decoding)
        eos = self.tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        return generate(self.model, features.to(self.device), eos, config)

    def decode(self, ids: Sequence[Sequence[int]], tidy: bool = True) -> list[str]:
        """Caption text per row of ids; tidy (the default) detokenises and ends every caption in one period, the
        same for every model family (captionkit.data.text.tidy_caption); tidy=False gives the tokenizer's text."""
        texts = [self.tokenizer.decode(list(row)).strip() for row in ids]
        return [tidy_caption(t) for t in texts] if tidy else texts

    def caption(
        self,
        images_or_paths: ImageInput | Sequence[ImageInput],
        batch_size: int = 16,
        progress: bool = False,
        rerank: str | None = None,
        rerank_weight: float | None = None,
        rerank_candidates: int | None = None,
        rerank_clip: str | None = None,
        **decoding: Any,
    ) -> list[str]:
        """One caption per image (a path, a PIL image, or a list of them), decoded as `decoding` says.

        rerank="clip": decode `rerank_candidates` candidates per image (beam n-best, or samples with do_sample)
        and keep the best by (1 - rerank_weight) * mean token log-probability + rerank_weight * CLIP-S, with the
        model's own CLIP (ClipCap) or the CLIP `rerank_clip` names ("clip:SOURCE"; needed for VGG-family models).
        """
        from captionkit.inference.rerank import RerankConfig

        items = (
            [images_or_paths]
            if isinstance(images_or_paths, (str, os.PathLike, Image.Image, ShardImage))
            else list(images_or_paths)
        )
        if batch_size < 1:
            raise ConfigError(f"caption: batch_size must be >= 1, got {batch_size}")
        self.decoding.replace(**decoding)  # a bad option fails before any image is loaded
        rerank_config = RerankConfig.from_options(rerank, rerank_weight, rerank_candidates, rerank_clip)
        if rerank_config is not None:
            self.reranker(rerank_config)  # so does a model that cannot rerank (its CLIP is loaded once, now)
        captions: list[str] = []
        with tqdm(total=len(items), disable=not progress, unit="img", desc="captioning") as bar:
            for start in range(0, len(items), batch_size):
                chunk = [self.load_image(image) for image in items[start : start + batch_size]]
                features = self.encode(chunk)
                captions.extend(self.decode(self.caption_ids(features, chunk, rerank_config, **decoding)))
                bar.update(len(chunk))
        return captions

    def caption_ids(
        self, features: Tensor, images: Sequence[Image.Image], rerank: Any = None, **decoding: Any
    ) -> list[list[int]]:
        """Caption ids for the (B, *feature_shape) `features` of `images`: decoded as `decoding` says, or with `rerank`
        (a captionkit.inference.rerank.RerankConfig) the best of its candidates (the images feed a CLIP other than the
        model's encoder). The step `caption` runs per batch, and the server per micro-batch."""
        if rerank is None:
            return self.generate(features, **decoding)
        return self.reranker(rerank).choose(
            self.model, self.tokenizer, features, images, self.decoding.replace(**decoding)
        )

    def reranker(self, config: Any) -> Any:
        """A ClipReranker for a RerankConfig; its CLIP is loaded once per captioner and spec."""
        from captionkit.inference.rerank import ClipReranker

        key = config.clip or ""
        if key not in self._rerankers:
            self._rerankers[key] = ClipReranker.for_encoder(config, None if config.clip else self.encoder, self.device)
        loaded = self._rerankers[key]
        return ClipReranker(config, loaded.scorer, loaded.features_are_clip)


def _load(image: ImageInput, max_pixels: int | None = None) -> Image.Image:
    """A path is decoded safely (ImageLoadError naming the file); a PIL image is used as RGB."""
    from captionkit.data.images import load_image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, ShardImage):
        return load_image(image, max_pixels=max_pixels)
    if isinstance(image, (str, os.PathLike)):
        return load_image(Path(image), max_pixels=max_pixels)
    raise TypeError(f"expected an image path or a PIL image, got {type(image).__name__}")
