"""captionkit: train, evaluate, compare and serve image-captioning models (VGG16+LSTM and ClipCap)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from captionkit.version import __version__

if TYPE_CHECKING:
    from captionkit.inference.captioner import Captioner


def load(model_dir: str, device: str | None = None, **options: Any) -> Captioner:
    """Load a model directory into a Captioner: `.caption(images_or_paths)` and `.generate(features)`."""
    from captionkit.inference.captioner import Captioner

    return Captioner.from_dir(model_dir, device=device, **options)


__all__ = ["load", "__version__"]
