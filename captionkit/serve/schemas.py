"""The API's shapes as OpenAPI sees them: response models, and the request bodies routes parse themselves."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from captionkit.decoding import DECODING_OPTIONS
from captionkit.inference.rerank import RERANK_METHODS, RERANK_OPTIONS
from captionkit.serve.options import OPTION_TYPES
from captionkit.serve.uploads import IMAGE_FIELD, JSON_IMAGES


class Health(BaseModel):
    status: Literal["ok"]


class ModelInfo(BaseModel):
    name: str
    type: str
    encoder: str | None
    attention: bool = Field(description="a Show-Attend-Tell model: POST /v1/attention works with it")
    default_decoding: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelInfo]


class CaptionEntry(BaseModel):
    image: str = Field(description="the uploaded file's name, or images[i] for JSON input")
    model: str
    caption: str


class Timing(BaseModel):
    total: float = Field(description="the whole request, milliseconds")
    read: float = Field(description="receiving and decoding the images")
    models: dict[str, float] = Field(description="per model: from the request's start to its captions")


class CaptionsResponse(BaseModel):
    captions: list[CaptionEntry]
    timing_ms: Timing


class AttentionResponse(BaseModel):
    model: str
    image: str
    words: list[str]
    grid: list[int] = Field(description="[rows, cols] of the attention grid")
    weights: list[list[float]] = Field(description="one row of rows*cols weights per word")
    crop: list[float] = Field(description="[left, top, side] in image pixels: the square the encoder saw")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


_RERANK_DESCRIPTIONS = {
    "rerank": f"rerank N candidates per image ({', '.join(RERANK_METHODS)}): beam n-best, or N samples with "
    "do_sample; the best by (1 - w) * mean token log-prob + w * CLIP-S",
    "rerank_weight": "w in [0, 1] (default 0.5); needs rerank",
    "rerank_candidates": "N >= 1 (default 5), at most the server's beam limit; needs rerank",
    "rerank_clip": "the CLIP to rerank with, one the server offers (default: the model's own encoder, when it is "
    "a CLIP; VGG-family models need one); needs rerank",
}


def _option_schemas(as_text: bool, rerank: bool) -> dict[str, Any]:
    """Decoding (and reranking) options as schema properties; in a form every value travels as text."""
    names = DECODING_OPTIONS + (RERANK_OPTIONS if rerank else ())
    schemas = {name: {"type": "string"} if as_text else {"type": _JSON_TYPES[OPTION_TYPES[name]]} for name in names}
    for name in RERANK_OPTIONS if rerank else ():
        schemas[name]["description"] = _RERANK_DESCRIPTIONS[name]
    return schemas


def request_body(multiple: bool) -> dict[str, Any]:
    """`openapi_extra` for a route that reads multipart or JSON itself (FastAPI cannot declare both). `multiple`:
    the captions route (several images, reranking options); else the attention route (one image)."""
    model = {"type": "string", "description": "a model name, or 'all' (captions only); default: the first model"}
    if multiple:
        files = {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1}
        b64 = {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}, "minItems": 1}
    else:
        files = {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1, "maxItems": 1}
        b64 = {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}, "minItems": 1, "maxItems": 1}
    form = {
        "type": "object",
        "required": [IMAGE_FIELD],
        "additionalProperties": False,
        "properties": {IMAGE_FIELD: files, "model": model, **_option_schemas(True, rerank=multiple)},
    }
    json_body = {
        "type": "object",
        "required": [JSON_IMAGES],
        "additionalProperties": False,
        "properties": {JSON_IMAGES: b64, "model": model, **_option_schemas(False, rerank=multiple)},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": json_body},
            },
        }
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "unreadable or corrupt image (the message names the upload), malformed body",
        401: "missing or wrong API key",
        403: "cross-origin request from an origin not allowed",
        404: "unknown model",
        413: "body, image count or image pixels over the limit",
        415: "not an image, or a body that is neither multipart nor JSON",
        422: "bad decoding or reranking option or field",
        503: "models loading, or the queue is full",
    }
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}
