"""Helpers of tests/serve: a TestClient over create_app, small encoded test images."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from PIL import Image

from captionkit.serve import ServeSettings, create_app


def make_client(models, **settings) -> TestClient:
    """A TestClient whose lifespan has run and whose models are loaded (call as a context manager)."""
    app = create_app(models, ServeSettings(**settings))
    return TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


def image_bytes(colour=(200, 30, 30), size=(64, 48), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()
