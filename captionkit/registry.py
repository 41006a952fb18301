"""Models, tokenizers and image encoders are built by name from registries; presets are small JSON files."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

from captionkit.errors import UnknownNameError

T = TypeVar("T")

_MODELS: dict[str, type] = {}
_TOKENIZERS: dict[str, type] = {}
_ENCODERS: dict[str, Callable[..., Any]] = {}


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    _import_builtins()
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(f"unknown {what} {name!r}; valid: {', '.join(sorted(table)) or '(none)'}") from None


def register_model(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: `@register_model("clipcap")` on a CaptionModel subclass with a `config_class`."""

    def wrap(cls: type[T]) -> type[T]:
        cls.model_type = name  # type: ignore[attr-defined]
        _MODELS[name] = cls
        return cls

    return wrap


def register_tokenizer(name: str) -> Callable[[type[T]], type[T]]:
    def wrap(cls: type[T]) -> type[T]:
        cls.tokenizer_type = name  # type: ignore[attr-defined]
        _TOKENIZERS[name] = cls
        return cls

    return wrap


def register_encoder(kind: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Register a factory `factory(source: str, **options) -> ImageEncoder` for specs `KIND:SOURCE`."""

    def wrap(factory: Callable[..., T]) -> Callable[..., T]:
        _ENCODERS[kind] = factory
        return factory

    return wrap


def get_model_class(name: str) -> type:
    return _lookup(_MODELS, name, "model type")


def get_tokenizer_class(name: str) -> type:
    return _lookup(_TOKENIZERS, name, "tokenizer type")


def get_encoder_factory(kind: str) -> Callable[..., Any]:
    return _lookup(_ENCODERS, kind, "encoder kind")


def model_types() -> list[str]:
    _import_builtins()
    return sorted(_MODELS)


def encoder_kinds() -> list[str]:
    _import_builtins()
    return sorted(_ENCODERS)


def list_presets() -> dict[str, str]:
    """Preset name -> one-line description, from `captionkit/presets/*.json`."""
    out = {}
    for entry in sorted(resources.files("captionkit.presets").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            out[entry.name[:-5]] = json.loads(entry.read_text(encoding="utf-8")).get("description", "")
    return out


def preset_summaries() -> dict[str, dict[str, str]]:
    """Preset name -> {"description": what it trains, "meant_for": the data (size, kind) it is meant for; "" when
    unstated}: what `captionkit models list` shows."""
    out = {}
    for entry in sorted(resources.files("captionkit.presets").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            out[entry.name[:-5]] = {"description": data.get("description", ""), "meant_for": data.get("meant_for", "")}
    return out


def get_preset(name: str) -> dict[str, Any]:
    """A preset's data: {"description", "model": {"type", ...}, "encoder": spec, "train": {...}, ...}."""
    names = list_presets()
    if name not in names:
        raise UnknownNameError(f"unknown preset {name!r}; valid: {', '.join(names)} (see `captionkit models list`)")
    text = resources.files("captionkit.presets").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


# Modules whose @register_* decorators fill the tables above, imported by name on the first lookup: the registry is
# the foundation layer and never imports the models it names (import-linter checks it).
BUILTIN_MODULES = (
    "captionkit.models.tokenizers",
    "captionkit.models.hf",
    "captionkit.models.clipcap",
    "captionkit.models.vgg",
    "captionkit.models.show_tell",
    "captionkit.models.show_attend_tell",
)


def _import_builtins() -> None:
    """Import the modules whose decorators fill the registries (kept lazy: importing captionkit stays cheap)."""
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)
