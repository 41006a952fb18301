"""The error types a user can act on; the CLI prints them as one line instead of a traceback."""

from __future__ import annotations


class ImageLoadError(OSError):
    """An image that cannot be used (missing, truncated, corrupt, too large); the message names the file."""


class ImageTooLargeError(ImageLoadError):
    """An image over the pixel limit (a decompression bomb or a huge scan), refused from its header alone."""


class NotAnImageError(ImageLoadError):
    """Data that is not an image in any format captionkit decodes (as opposed to a recognised but corrupt one)."""


class FeatureCacheError(ValueError):
    """A feature cache that does not match the dataset or encoder asked for; the message says what differs."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded or resumed; the message names the file and the mismatch."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Every error type whose message tells the user what to fix (imported lazily: some modules pull in torch)."""
    from captionkit.config import ConfigError
    from captionkit.data.records import DatasetError
    from captionkit.models.model_dir import ModelDirError
    from captionkit.registry import UnknownNameError

    return (
        ConfigError,
        DatasetError,
        ModelDirError,
        UnknownNameError,
        ImageLoadError,
        FeatureCacheError,
        CheckpointError,
        FileNotFoundError,
    )
