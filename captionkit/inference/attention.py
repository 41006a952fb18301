"""Attention heat maps: the image, then one panel per generated word with the upsampled attention over it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

PANEL_PX = 224  # each panel is the encoder's view of the image, resized to PANEL_PX x PANEL_PX
LABEL_PX = 28  # a strip under each panel holding its word
COLUMNS = 5
HEAT_OPACITY = 0.6
VGG_CROP_FRACTION = 224 / 256  # VGG16 preprocessing: resize the shorter side to 256, centre-crop 224


def attention_map_size(num_words: int, columns: int = COLUMNS) -> tuple[int, int]:
    """(width, height) in pixels of the figure for `num_words` words (plus the plain image panel)."""
    panels = num_words + 1
    cols = min(columns, panels)
    return cols * PANEL_PX, math.ceil(panels / cols) * (PANEL_PX + LABEL_PX)


def caption_with_attention(captioner: Any, image: Image.Image, **decoding: Any) -> tuple[list[str], Tensor]:
    """Caption one image with an attention model (a captionkit.inference.captioner.Captioner): its words, and the
    attention weights (T, L) over the encoder's grid that produced each of them."""
    from captionkit.errors import ConfigError
    from captionkit.models.show_attend_tell import ShowAttendTell, attention_for

    if not isinstance(captioner.model, ShowAttendTell):
        raise ConfigError(
            f"model type {captioner.model.model_type!r} has no attention weights; attention maps need "
            "a show-attend-tell model"
        )
    features = captioner.encode([image])
    ids = captioner.generate(features, **decoding)[0]
    weights = attention_for(captioner.model, features, [ids])[0]
    # a special token the tokenizer decodes to "" (an undertrained model may emit <pad>) still gets its panel
    return [captioner.tokenizer.decode([i]).strip() or f"<id {i}>" for i in ids], weights


def crop_fraction_of(captioner: Any) -> float:
    """The share of the image's shorter side that the captioner's encoder keeps (crop / resize of a
    resize-then-centre-crop preprocessing); VGG16's 224/256 when the encoder does not say."""
    preprocessor = getattr(captioner.encoder, "preprocessor", None)
    if preprocessor is None:
        return VGG_CROP_FRACTION
    return preprocessor.crop / preprocessor.resize


def encoder_crop(size: tuple[int, int], crop_fraction: float = VGG_CROP_FRACTION) -> tuple[int, int, int]:
    """(left, top, side) in pixels of the central square a resize-then-centre-crop encoder sees in an image of
    `size` (width, height)."""
    side = round(min(size) * crop_fraction)
    return round((size[0] - side) / 2), round((size[1] - side) / 2), side


def encoder_view(image: Image.Image, crop_fraction: float = VGG_CROP_FRACTION) -> Image.Image:
    """The central square of `image` that a resize-then-centre-crop encoder sees (the grid covers exactly it)."""
    left, top, side = encoder_crop(image.size, crop_fraction)
    return image.crop((left, top, left + side, top + side))


def render_attention_map(
    image: Image.Image,
    words: Sequence[str],
    weights: Tensor,
    out_path: str | Path,
    grid: tuple[int, int] | None = None,
    columns: int = COLUMNS,
    crop_fraction: float = VGG_CROP_FRACTION,
) -> Path:
    """Write one PNG: the image as the encoder saw it, then for each word its attention weights (row t of
    `weights` (T, L), L = rows x cols of `grid`, a square grid when None) upsampled over it as a heat map.

    `image` is the original picture: it is centre-cropped to the square the encoder read, `crop_fraction` of its
    shorter side (VGG16 preprocessing: 224 of 256; pass 1.0 for an image that is already that view)."""
    canvas = attention_figure(image, words, weights, grid, columns, crop_fraction)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, format="PNG")
    return out_path


def attention_grid(weights: Tensor, grid: tuple[int, int] | None = None) -> tuple[int, int]:
    """(rows, cols) of the attention grid: `grid` when given, else the square one that L of `weights` (T, L) fills."""
    if grid is not None:
        return grid
    side = math.isqrt(weights.size(-1)) if weights.dim() == 2 else 0
    return side, side


def attention_figure(
    image: Image.Image,
    words: Sequence[str],
    weights: Tensor,
    grid: tuple[int, int] | None = None,
    columns: int = COLUMNS,
    crop_fraction: float = VGG_CROP_FRACTION,
) -> Image.Image:
    """The figure render_attention_map writes, as an RGB image (for a caller that sends it rather than saves it)."""
    weights = torch.as_tensor(weights, dtype=torch.float32).detach().cpu()
    grid = attention_grid(weights, grid)
    if weights.dim() != 2 or weights.size(0) != len(words) or weights.size(1) != grid[0] * grid[1]:
        raise ValueError(
            f"attention weights of shape {tuple(weights.shape)} do not fit {len(words)} words on a "
            f"{grid[0]}x{grid[1]} grid: expected ({len(words)}, {grid[0] * grid[1]})"
        )
    base = encoder_view(image.convert("RGB"), crop_fraction).resize((PANEL_PX, PANEL_PX), Image.Resampling.BICUBIC)
    width, height = attention_map_size(len(words), columns)
    cols = min(columns, len(words) + 1)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    panels = [(base, "")] + (list(zip(_heat_panels(base, weights, grid), words)) if words else [])
    for i, (panel, word) in enumerate(panels):
        x, y = (i % cols) * PANEL_PX, (i // cols) * (PANEL_PX + LABEL_PX)
        canvas.paste(panel, (x, y))
        draw.text((x + PANEL_PX // 2, y + PANEL_PX + LABEL_PX // 2), word, fill="black", font=font, anchor="mm")
    return canvas


def _heat_panels(base: Image.Image, weights: Tensor, grid: tuple[int, int]) -> list[Image.Image]:
    """One image per row of `weights` (T, L): the weights upsampled bicubically, scaled to their maximum and
    coloured with matplotlib's 'jet' colour map, blended over `base`."""
    from matplotlib import colormaps

    maps = weights.view(-1, 1, *grid)  # (T, 1, rows, cols)
    maps = F.interpolate(maps, size=(PANEL_PX, PANEL_PX), mode="bicubic", align_corners=False).clamp(min=0)[:, 0]
    maps = maps / maps.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)  # (T, PANEL_PX, PANEL_PX) in [0, 1]
    colours = colormaps["jet"](maps.numpy())[..., :3]  # (T, P, P, 3) floats in [0, 1]
    image = np.asarray(base, dtype=np.float32) / 255.0
    blended = (1 - HEAT_OPACITY) * image + HEAT_OPACITY * colours
    return [Image.fromarray((b * 255).round().astype(np.uint8)) for b in blended]
