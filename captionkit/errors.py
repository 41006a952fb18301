"""Every error a user can act on, in one place. The CLI prints these as one line on stderr (exit status 2) instead of
a traceback; the message names the file, line or field and what to do. Imports nothing of captionkit (foundation)."""

from __future__ import annotations

import importlib
from types import ModuleType


class CaptionkitError(Exception):
    """Base of every user-facing captionkit error: the message alone tells the user what to fix."""


class ConfigError(CaptionkitError, ValueError):
    """A configuration file, key, value or option that cannot be used; the message names it."""


class UnknownNameError(CaptionkitError, KeyError):
    """A model type, preset, tokenizer or encoder name that is not registered; the message lists valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DatasetError(CaptionkitError, ValueError):
    """A dataset that cannot be read; the message names the file (and line or field) and what to do."""


class ModelDirError(CaptionkitError, ValueError):
    """A model directory that cannot be loaded; the message names the file and what is wrong."""


class ImageLoadError(CaptionkitError, OSError):
    """An image that cannot be used (missing, truncated, corrupt, too large); the message names the file."""


class ImageTooLargeError(ImageLoadError):
    """An image over the pixel limit (a decompression bomb or a huge scan), refused from its header alone."""


class NotAnImageError(ImageLoadError):
    """Data that is not an image in any format captionkit decodes (as opposed to a recognised but corrupt one)."""


class FeatureCacheError(CaptionkitError, ValueError):
    """A feature cache that does not match the dataset or encoder asked for; the message says what differs."""


class CheckpointError(CaptionkitError, ValueError):
    """A checkpoint that cannot be loaded or resumed; the message names the file and the mismatch."""


def user_errors() -> tuple[type[BaseException], ...]:
    """What the CLI reports as one line: captionkit's own errors and a missing file the user named."""
    return (CaptionkitError, FileNotFoundError)


class MissingExtraError(CaptionkitError, ImportError):
    """An optional dependency that is not installed; the message is the pip command that installs its extra."""


def require(module: str, extra: str) -> ModuleType:
    """Import `module` of the optional extra `extra` (train, eval, serve, scale, notebooks), or fail with the one
    line that installs it. A module that is installed but fails to import is not hidden behind that hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingExtraError(
            f"{module} is not installed; it comes with captionkit's {extra!r} extra: "
            f"pip install 'captionkit[{extra}]' (in a clone: pip install -e '.[{extra}]')"
        ) from exc
