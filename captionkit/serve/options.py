"""Decoding and reranking options from a request (form strings or JSON values) -> a validated DecodingConfig and
RerankConfig, as `caption` does."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Hashable, Mapping
from typing import Any

from captionkit.decoding import DECODING_OPTIONS, DecodingConfig
from captionkit.errors import ConfigError
from captionkit.inference.rerank import RERANK_OPTIONS, RerankConfig
from captionkit.serve.errors import ApiError
from captionkit.serve.settings import ServeSettings

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
MIN_SAMPLING_TEMPERATURE = 0.01


def _option_types(annotated: Any, names: tuple[str, ...]) -> dict[str, type]:
    """name -> int/float/bool/str, read from `annotated`'s annotations (`int | None` -> int)."""
    hints = typing.get_type_hints(annotated)
    types = {}
    for name in names:
        hint = hints[name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        types[name] = args[0] if args else hint
    return types


# the reranking options are RerankConfig.from_options's keyword arguments, as for Captioner.caption
OPTION_TYPES = {
    **_option_types(DecodingConfig, DECODING_OPTIONS),
    **_option_types(RerankConfig.from_options, RERANK_OPTIONS),
}


def _invalid(name: str, expected: str, value: Any) -> ApiError:
    return ApiError(422, "invalid_option", f"{name}: expected {expected}, got {value!r}")


def _int64(name: str, value: int) -> int:
    """torch takes seeds and sizes as 64-bit integers; a larger one would fail inside decoding, not here."""
    if not -(2**63) <= value < 2**63:
        raise _invalid(name, "a 64-bit integer", value)
    return value


def _from_text(name: str, kind: type, text: str) -> Any:
    """A form field's string -> its option's type (what argparse's type= does for `captionkit caption`)."""
    text = text.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise _invalid(name, "true or false", text)
    if kind is int:
        try:
            return _int64(name, int(text))
        except ValueError:
            raise _invalid(name, "an integer", text) from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise _invalid(name, "a number", text) from None
        if not math.isfinite(value):
            raise _invalid(name, "a finite number", text)
        return value
    return text


def _from_json(name: str, kind: type, value: Any) -> Any:
    """A JSON value, type-checked strictly (true is not 1, "3" is not 3)."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return _int64(name, value)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _invalid(name, "a finite number", value)
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise _invalid(name, {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind], value)


def parse_options(fields: Mapping[str, Any], from_form: bool) -> dict[str, Any]:
    """The decoding and reranking options present in `fields` (unknown names are the caller's to refuse), typed."""
    options = {}
    for name in OPTION_TYPES:
        value = fields.get(name)
        if value is None or (from_form and value == ""):
            continue  # not given: the model's default
        kind = OPTION_TYPES[name]
        options[name] = _from_text(name, kind, value) if from_form else _from_json(name, kind, value)
    return options


def resolve(defaults: DecodingConfig, options: dict[str, Any], settings: ServeSettings) -> DecodingConfig:
    """`defaults` with `options` applied, checked by DecodingConfig itself and the requested values against the
    server's caps (422)."""
    try:
        config = defaults.replace(**{k: v for k, v in options.items() if k in DECODING_OPTIONS})
    except ConfigError as exc:
        raise ApiError(422, "invalid_option", str(exc)) from None
    # the caps bound what a client asks for; a model's own defaults are the operator's choice
    if "num_beams" in options and config.num_beams > settings.max_beams:
        raise ApiError(
            422, "invalid_option", f"num_beams: {config.num_beams} is over this server's limit of {settings.max_beams}"
        )
    if "max_new_tokens" in options and config.max_new_tokens > settings.max_new_tokens:
        raise ApiError(
            422,
            "invalid_option",
            f"max_new_tokens: {config.max_new_tokens} is over this server's limit of {settings.max_new_tokens}",
        )
    if config.do_sample and config.temperature < MIN_SAMPLING_TEMPERATURE:
        raise ApiError(
            422,
            "invalid_option",
            f"temperature: {config.temperature:g} is below "
            f"{MIN_SAMPLING_TEMPERATURE:g}, where the scaled logits overflow; "
            "decode greedily (do_sample false) instead",
        )
    return config


def resolve_rerank(options: dict[str, Any], settings: ServeSettings) -> RerankConfig | None:
    """The reranking `options` checked by RerankConfig itself, against the server's beam cap and against the CLIPs
    the server offers (422); None when the request does not rerank. Whether each model can rerank with it is
    ServedModel.check_reranker's to say."""
    try:
        config = RerankConfig.from_options(**{k: v for k, v in options.items() if k in RERANK_OPTIONS})
    except ConfigError as exc:
        raise ApiError(422, "invalid_option", str(exc)) from None
    if config is None:
        return None
    # N candidates are a beam of width N: the same work the num_beams cap bounds
    if config.candidates > settings.max_beams:
        default = "" if "rerank_candidates" in options else " (the default)"
        raise ApiError(
            422,
            "invalid_option",
            f"rerank_candidates: {config.candidates}{default} is over this server's limit of {settings.max_beams}",
        )
    # a client never makes the server load a model: only the CLIPs its operator loaded are on offer
    if config.clip is not None and config.clip not in settings.rerank_clips:
        offered = f"offered: {list(settings.rerank_clips)}" if settings.rerank_clips else "it offers none"
        raise ApiError(
            422,
            "invalid_option",
            f"rerank_clip: {config.clip!r} is not a CLIP this server reranks "
            f"with ({offered}); omit it to rerank with the model's own CLIP",
        )
    return config


def batch_key(config: DecodingConfig, rerank: RerankConfig | None = None) -> Hashable:
    """Requests with equal keys are decoded (and reranked) in one batch. A seeded sampler runs alone: its draws
    must not depend on which other images happened to share its batch."""
    if config.do_sample and config.seed is not None:
        return object()
    reranking = None if rerank is None else tuple(sorted(dataclasses.asdict(rerank).items()))
    return tuple(sorted(dataclasses.asdict(config).items())), reranking
