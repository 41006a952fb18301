"""The captioning web service: `create_app(models, settings)` (FastAPI) behind `captionkit serve`.

An application: it may import training, report, evaluation, inference and everything below them; never demo or
cli. Needs the `serve` extra (FastAPI, uvicorn)."""

from __future__ import annotations

from captionkit.serve.app import create_app
from captionkit.serve.settings import ServeSettings

__all__ = ["create_app", "ServeSettings"]
