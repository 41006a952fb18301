"""A request's images and fields: multipart uploads or JSON base64, size-checked, decoded by the safe loader."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from captionkit.data.images import load_image
from captionkit.errors import ImageLoadError, ImageTooLargeError, NotAnImageError
from captionkit.serve.errors import ApiError
from captionkit.serve.settings import ServeSettings

IMAGE_FIELD = "image"  # multipart: one or more files in this field
JSON_IMAGES = "images"  # JSON: a list of base64 strings


@dataclass
class Upload:
    name: str  # the client's file name (only ever shown back, never used as a path), or "images[i]" for JSON
    data: bytes


@dataclass
class ParsedRequest:
    uploads: list[Upload]
    fields: dict[str, Any] = field(default_factory=dict)  # every other field, as sent
    from_form: bool = True  # form values are strings; JSON values are typed


async def read_request(request: Request, settings: ServeSettings, allowed_fields: set[str]) -> ParsedRequest:
    """The images and fields of a multipart or JSON request; unknown fields are refused (422)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        parsed = await _read_form(request, settings)
    elif kind == "application/json":
        parsed = await _read_json(request)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send images as multipart/form-data (field {IMAGE_FIELD!r}) "
            f"or application/json ({JSON_IMAGES!r}), not {kind or 'no body'!r}",
        )
    unknown = sorted(set(parsed.fields) - allowed_fields)
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field(s) {unknown}; valid: {sorted(allowed_fields)}")
    if not parsed.uploads:
        where = f"files in the form field {IMAGE_FIELD!r}" if parsed.from_form else f"base64 strings in {JSON_IMAGES!r}"
        raise ApiError(422, "no_image", f"no image: send one or more {where}")
    if len(parsed.uploads) > settings.max_images:
        raise ApiError(
            413,
            "too_many_images",
            f"{len(parsed.uploads)} images in one request; this server takes at most {settings.max_images}",
        )
    return parsed


async def _read_form(request: Request, settings: ServeSettings) -> ParsedRequest:
    try:
        # Starlette spools big parts to anonymous temporary files, never to a client-chosen name.
        form = await request.form(max_files=settings.max_images, max_fields=100)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed multipart: starlette's errors vary by version
        message = str(getattr(exc, "detail", exc))
        if "Too many files" in message:  # starlette's max_files check, raised as a plain 400
            raise ApiError(
                413,
                "too_many_images",
                f"more than {settings.max_images} images in one request; "
                f"this server takes at most {settings.max_images}",
            ) from None
        raise ApiError(400, "bad_form", f"cannot parse the multipart form: {message}") from None
    try:
        uploads, fields = [], {}
        for key, value in form.multi_items():
            if key == IMAGE_FIELD:
                number = len(uploads) + 1
                if isinstance(value, UploadFile):
                    uploads.append(Upload(value.filename or f"image {number}", await value.read()))
                else:  # a plain text field where a file was expected: judged as an image like any other bytes
                    uploads.append(Upload(f"image {number}", value.encode("utf-8")))
            elif isinstance(value, UploadFile):
                raise ApiError(422, "unexpected_file", f"field {key!r}: a file was sent where text was expected")
            elif key in fields:
                raise ApiError(422, "repeated_field", f"field {key!r} was sent more than once")
            else:
                fields[key] = value
    finally:
        await form.close()
    return ParsedRequest(uploads, fields, from_form=True)


async def _read_json(request: Request) -> ParsedRequest:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "bad_json", f"the JSON body must be an object with {JSON_IMAGES!r}")
    images = body.pop(JSON_IMAGES, [])
    if not isinstance(images, list) or not all(isinstance(item, str) for item in images):
        raise ApiError(422, "bad_json", f"{JSON_IMAGES!r} must be a list of base64 strings")
    uploads = [Upload(f"{JSON_IMAGES}[{i}]", _b64decode(f"{JSON_IMAGES}[{i}]", item)) for i, item in enumerate(images)]
    return ParsedRequest(uploads, body, from_form=False)


def _b64decode(name: str, text: str) -> bytes:
    """Standard base64, optionally as a data: URL (what a browser's FileReader gives)."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "bad_base64", f"{name}: not valid base64 ({exc})") from None


def _decode(upload: Upload, settings: ServeSettings) -> Image.Image:
    try:
        return load_image(upload.data, max_pixels=settings.max_pixels, name=upload.name)
    except ImageTooLargeError as exc:
        raise ApiError(413, "image_too_large", str(exc)) from None
    except NotAnImageError as exc:
        raise ApiError(415, "not_an_image", str(exc)) from None
    except ImageLoadError as exc:
        raise ApiError(400, "bad_image", str(exc)) from None


async def decode_images(uploads: list[Upload], settings: ServeSettings) -> list[Image.Image]:
    """Every upload decoded to RGB off the event loop; the first bad one fails the request, naming it."""
    return await run_in_threadpool(lambda: [_decode(upload, settings) for upload in uploads])
