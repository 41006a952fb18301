"""The captioning web service: `create_app(models, settings)` (FastAPI) behind `captionkit serve`."""

from __future__ import annotations

from captionkit.serve.app import create_app
from captionkit.serve.settings import ServeSettings

__all__ = ["create_app", "ServeSettings"]
