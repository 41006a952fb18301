"""captionkit: train, evaluate, compare and serve image-captioning models (VGG16+LSTM and ClipCap)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from captionkit.captioner import Captioner


def load(model_dir: str, device: str | None = None, **options: Any) -> Captioner:
    """Load a model directory into a Captioner: `.caption(images_or_paths)` and `.generate(features)`."""
    from captionkit.captioner import Captioner

    return Captioner.from_dir(model_dir, device=device, **options)


__all__ = ["load", "__version__"]
