"""Number formats for inference: the `dtype` setting (float32, bfloat16, float16) and `quantize="int8"`, checked once
against the device and applied to a model or an image encoder."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from captionkit.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZE = ("int8",)
# Layers dynamic int8 quantization replaces: the per-token matmuls of every decoder family (GPT-2's Conv1D layers are
# converted to nn.Linear first, see hf.conv1d_to_linear). Embeddings and convolutions stay in floating point.
_INT8_LAYERS = {nn.Linear, nn.LSTM, nn.LSTMCell}


@dataclass(frozen=True)
class Precision:
    """How a model runs: its floating dtype and, optionally, int8 dynamic quantization of its decoder."""

    dtype: str = "float32"
    quantize: str | None = None

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def encoder_dtype(self) -> torch.dtype:
        """int8 covers the decoder only: the image encoder then runs in float32."""
        return self.torch_dtype


def resolve_precision(
    dtype: str | None = None, quantize: str | None = None, device: str | torch.device | None = None
) -> Precision:
    """Check a dtype / quantize pair against the device; ConfigError naming the supported combinations."""
    dtype = dtype or "float32"
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; valid: {', '.join(DTYPES)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"quantize {quantize!r} is not supported; valid: {', '.join(QUANTIZE)} (or none)")
    device_type = torch.device(device).type if device is not None else "cpu"
    if dtype == "float16" and device_type == "cpu":
        raise ConfigError(
            "dtype float16 needs a GPU (CPU float16 matmuls are slow and lose range); on the CPU use bfloat16"
        )
    if quantize == "int8":
        if device_type != "cpu":
            raise ConfigError(f"quantize int8 runs on the CPU only (dynamic quantization); the device is {device}")
        if dtype != "float32":
            raise ConfigError(f"quantize int8 takes float32 layers; it does not combine with dtype {dtype}")
    return Precision(dtype, quantize)


def floating_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a module's first floating-point parameter (float32 when it has none, e.g. fully quantized)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def cast_encoder(encoder: nn.Module, precision: Precision, copy_first: bool = False) -> nn.Module:
    """An image encoder in the precision's encoder dtype. Weights are converted once (not autocast, which re-casts
    them on every call); `copy_first` leaves the caller's module untouched."""
    dtype = precision.encoder_dtype
    if floating_dtype(encoder) == dtype:
        return encoder
    return (copy.deepcopy(encoder) if copy_first else encoder).to(dtype)


def apply_precision(model: nn.Module, precision: Precision) -> nn.Module:
    """Convert a caption model in place to `precision` (returns the model to use: quantization swaps layers).

    int8: dynamic quantization (torch.ao.quantization.quantize_dynamic: weights int8 once, activations quantized
    per call) of the decoder's Linear/LSTM layers. A model holding a GPT-2 gets only its GPT-2 quantized: that is
    where the per-token work is; the rest (ClipCap's prefix mapping, run once per image) stays float32.
    """
    if precision.quantize == "int8":
        from captionkit.models import hf

        gpt2s = hf.gpt2_modules(model)
        for gpt in gpt2s or [model]:
            hf.conv1d_to_linear(gpt)
            _quantize_int8(gpt)
        return model
    if precision.dtype != "float32":
        model.to(precision.torch_dtype)
    return model


def _quantize_int8(module: nn.Module) -> None:
    """Swap the module's Linear/LSTM layers for torch's dynamically quantized ones, in place."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch 2.13 marks the eager torch.ao.quantization API deprecated (in favour of torchao, not a dependency
        # here); it still works and is what the brief asks for: keep the notice off the user's terminal.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(module, _INT8_LAYERS, dtype=torch.qint8, inplace=True)
