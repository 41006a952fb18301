"""The one default-device rule (the first GPU torch sees, else the CPU) and the check of a device a user names."""

from __future__ import annotations

import torch

from captionkit.errors import ConfigError


def available_devices() -> list[str]:
    """The devices torch can use here, e.g. ["cuda:0", "cuda:1", "cpu"]."""
    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if torch.backends.mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def default_device() -> torch.device:
    """The first GPU torch sees (whichever CUDA_VISIBLE_DEVICES selects), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` (None: `default_device()`), refused with a ConfigError when it does not exist on this machine."""
    if device is None:
        return default_device()
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"device {str(device)!r} is not a device name; devices here: {', '.join(available_devices())}"
        ) from exc
    here = ", ".join(available_devices())
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"CUDA is not available; devices here: {here}")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ConfigError(f"device {chosen} does not exist; devices here: {here}")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"MPS is not available; devices here: {here}")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {str(device)!r} is not supported; devices here: {here}")
    return chosen
