"""The one safe image loader: any common file -> an upright RGB PIL image, or an ImageLoadError naming the file."""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps

from captionkit.data.records import ShardImage
from captionkit.errors import ImageLoadError, ImageTooLargeError, NotAnImageError

# Formats captionkit decodes (PIL's JPEG opener also covers MPO, the multi-picture JPEG of many cameras). Others
# are refused rather than handed to every PIL plugin, which keeps the attack surface of user uploads small.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}  # the file names searched in folders
# Errors PIL's decoders raise on bad input (SyntaxError and struct.error come from some plugins' header parsing).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

# PIL warns (with its own file path in the message) when an image is over its pixel limit and refuses it at twice
# that; load_image checks the size itself first and raises ImageTooLargeError naming the image and `max_pixels`, so
# PIL's raw warning only repeats that, worse: keep it off the user's terminal.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_strict_lock = threading.Lock()
_strict_users = 0
_saved_truncated = False


@contextmanager
def _truncated_images_refused() -> Iterator[None]:
    """Force PIL's global ImageFile.LOAD_TRUNCATED_IMAGES off while we decode.

    PIL reads that module global during every decode; training scripts often set it to True, and then a cut-off
    JPEG loads as grey padding instead of failing. A counter lets overlapping loads in several threads share one
    saved value, so the caller's setting is restored exactly once, after the last of them.
    """
    global _strict_users, _saved_truncated
    with _strict_lock:
        if _strict_users == 0:
            _saved_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_users += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_users -= 1
            if _strict_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _saved_truncated


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent pixels are composited on white (how viewers show them); 16-bit and
    32-bit grey is rescaled, where PIL's own convert() would clip everything above 255 to white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = array.max(initial=0)
        top = 1.0 if mode == "F" and peak <= 1.0 else 255.0 if peak <= 255 and not mode.startswith("I;16") else 65535.0
        grey = np.clip(array * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGB"), mask=image.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _name(source: str | os.PathLike[str] | BinaryIO) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", "<image data>"))


def load_image(
    path: str | os.PathLike[str] | BinaryIO | bytes | ShardImage, max_pixels: int | None = None, name: str | None = None
) -> Image.Image:
    """Decode an image fully into an upright RGB image.

    `path` may be a file path, an open binary file, the file's bytes or a ShardImage (an image inside a WebDataset
    tar or a parquet/arrow shard; errors name it SHARD::MEMBER). EXIF orientation is applied; L, LA, P,
    RGBA, CMYK, 16-bit and other modes become RGB; for animated GIF/WebP the first frame is used. A missing,
    zero-byte, truncated, corrupt or unsupported file raises ImageLoadError naming the file. An image of more than
    `max_pixels` pixels (default: PIL's Image.MAX_IMAGE_PIXELS, about 89 million) raises ImageLoadError from its
    header alone, before any pixel is decoded, instead of exhausting memory. (PIL independently refuses images over
    twice its own MAX_IMAGE_PIXELS; raise that global too to allow larger ones.) `name` is what error messages
    call the image (default: the path, or the file object's name); e.g. an upload's file name.

    The subclasses ImageTooLargeError (over the pixel limit) and NotAnImageError (no supported format recognised)
    tell those two cases apart from a recognised but corrupt file.
    """
    if isinstance(path, ShardImage):
        from captionkit.data.shards import read_shard_image

        try:
            data = read_shard_image(path)
        except OSError as exc:
            raise ImageLoadError(str(exc)) from exc
        if not data:
            raise ImageLoadError(f"{path}: empty image (0 bytes)")
        source: str | os.PathLike[str] | BinaryIO = io.BytesIO(data)
        name = name if name is not None else str(path)
    else:
        source = io.BytesIO(path) if isinstance(path, bytes) else path
        name = name if name is not None else _name(source)
        if isinstance(path, bytes) and not path:
            raise ImageLoadError(f"{name}: empty file (0 bytes)")
    if isinstance(source, (str, os.PathLike)):
        try:
            size = Path(source).stat().st_size
        except OSError as exc:
            raise ImageLoadError(f"{name}: cannot read image ({exc.strerror or exc})") from exc
        if size == 0:
            raise ImageLoadError(f"{name}: empty file (0 bytes); re-download or remove it")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with _truncated_images_refused(), Image.open(source, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if limit is not None and width * height > limit:
                raise ImageTooLargeError(
                    f"{name}: {width}x{height} = {width * height} pixels is over the limit of "
                    f"{limit} (a decompression bomb or a huge scan); raise max_pixels to allow it"
                )
            image.seek(0)  # first frame of an animation
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))  # a new image: valid after the file is closed
    except ImageLoadError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise NotAnImageError(f"{name}: not a {'/'.join(IMAGE_FORMATS)} image, or the file is corrupt") from exc
    except (
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:  # the warning when warnings are errors
        raise ImageTooLargeError(f"{name}: refused as a decompression bomb ({exc})") from exc
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{name}: no such file") from exc
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(
            f"{name}: cannot decode image ({type(exc).__name__}: {exc}); the file is truncated or corrupt"
        ) from exc
