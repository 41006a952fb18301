"""The safe image loader on generated files: modes, formats, EXIF rotation, and every way a file can be bad."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from captionkit.data.images import load_image
from captionkit.errors import ImageLoadError


def save(image: Image.Image, path: Path, fmt: str, **kwargs) -> Path:
    image.save(path, fmt, **kwargs)
    return path


def gradient(width: int = 40, height: int = 30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    return Image.fromarray(np.stack([x, 255 - x, np.full_like(x, 90)], -1), "RGB")


@pytest.mark.parametrize(
    "fmt,suffix", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("GIF", "gif")]
)
def test_common_formats_load_as_rgb(tmp_path, fmt, suffix):
    image = load_image(save(gradient(), tmp_path / f"g.{suffix}", fmt))
    assert image.mode == "RGB" and image.size == (40, 30)
    assert abs(int(np.asarray(image)[15, 0, 0]) - 0) < 20 and abs(int(np.asarray(image)[15, 39, 0]) - 255) < 20


def test_rgba_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black: must not come out black
    image = load_image(save(rgba, tmp_path / "a.png", "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((4, 4)) == (0, 0, 255)


def test_la_l_and_palette_with_transparency(tmp_path):
    la = Image.new("LA", (4, 4), (100, 255))
    la.putpixel((1, 1), (0, 0))
    out = load_image(save(la, tmp_path / "la.png", "PNG"))
    assert out.getpixel((0, 0)) == (100, 100, 100) and out.getpixel((1, 1)) == (255, 255, 255)
    assert load_image(save(Image.new("L", (4, 4), 77), tmp_path / "l.png", "PNG")).getpixel((0, 0)) == (77, 77, 77)
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0
    out = load_image(save(palette, tmp_path / "p.png", "PNG", transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((2, 2)) == (250, 10, 10)


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    image = load_image(save(cmyk, tmp_path / "c.jpg", "JPEG"))
    red, green, blue = image.getpixel((8, 8))
    assert image.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_16_bit_grey_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png", "PNG")
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(load_image(path))[..., 0]
    assert pixels.tolist() == [[0, 128], [255, 4]]  # PIL's convert("RGB") would give 255 for all but 0


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = load_image(save(image, tmp_path / "rot.jpg", "JPEG", exif=exif.tobytes()))
    assert loaded.size == (20, 40)
    assert loaded.getpixel((10, 2))[0] > 200 and loaded.getpixel((10, 37))[0] < 60  # left band is now on top


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=50)
    red, green, _ = load_image(path).getpixel((4, 4))
    assert red > 200 and green < 60


def test_bytes_and_file_objects(tmp_path):
    data = save(gradient(), tmp_path / "g.png", "PNG").read_bytes()
    assert load_image(data).size == (40, 30)
    assert load_image(io.BytesIO(data)).size == (40, 30)


def test_zero_byte_missing_and_garbage_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg: empty file"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageLoadError, match=r"nothere\.jpg: cannot read image"):
        load_image(tmp_path / "nothere.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageLoadError, match=r"junk\.jpg: not a JPEG/"):
        load_image(tmp_path / "junk.jpg")


def test_unsupported_format_is_refused(tmp_path):
    with pytest.raises(ImageLoadError, match=r"g\.tif"):
        load_image(save(gradient(), tmp_path / "g.tif", "TIFF"))


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("PNG", "png")])
@pytest.mark.parametrize("global_truncated", [False, True])
def test_truncated_files_raise_even_if_pil_is_told_to_allow_them(tmp_path, monkeypatch, fmt, suffix, global_truncated):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = save(noisy, tmp_path / f"full.{suffix}", fmt).read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", global_truncated)
    with pytest.raises(ImageLoadError, match=rf"cut\.{suffix}: cannot decode image .*truncated"):
        load_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is global_truncated  # the caller's setting is restored


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose pixel data is missing: a decompression-bomb probe."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_oversized_images_are_refused_from_the_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(60_000, 60_000))  # 3.6 gigapixels: decoding would need ~10 GB
    with pytest.raises(ImageLoadError, match=r"bomb\.png: .*(over the limit|decompression bomb)"):
        load_image(bomb)
    small = save(gradient(), tmp_path / "g.png", "PNG")
    with pytest.raises(ImageLoadError, match=r"40x30 = 1200 pixels is over the limit of 1000"):
        load_image(small, max_pixels=1000)
    assert load_image(small, max_pixels=1200).size == (40, 30)


def test_decompression_bomb_warning_as_error_is_an_image_load_error(tmp_path, monkeypatch):
    path = save(gradient(), tmp_path / "g.png", "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 px: PIL warns (it errors above 2x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageLoadError, match=r"g\.png"):
            load_image(path, max_pixels=10_000)


@settings(max_examples=50, deadline=None)
@given(
    data=st.binary(max_size=300),
    prefix=st.sampled_from(
        [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 "]
    ),
)
def test_random_bytes_raise_image_load_error(data, prefix):
    try:
        image = load_image(prefix + data)
    except ImageLoadError:
        return
    assert image.mode == "RGB"  # the rare random input that is a valid image
