"""Request guards as plain ASGI middleware: cross-origin refusal, the API key, and the request-body size limit."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from captionkit.serve.errors import ApiError, error_response

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIX = "/v1/"  # the API; the page, /healthz and /openapi.json stay open


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class OriginGuard:
    """Refuse (403) a request whose Origin header is neither this server's own origin nor an allowed one.

    Without this a page on any site could POST images here from a visitor's browser (a "simple" multipart
    request needs no CORS preflight); CORS headers alone only stop that page from reading the answer.
    """

    def __init__(self, app: ASGIApp, allow_origins: list[str]) -> None:
        self.app, self.allow = app, set(allow_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = _header(scope, b"origin")
            host = _header(scope, b"host")
            own = f"{scope.get('scheme', 'http')}://{host}" if host else None
            if origin is not None and origin != own and origin not in self.allow and "*" not in self.allow:
                response = error_response(
                    403,
                    "cross_origin_refused",
                    f"cross-origin request from {origin} refused: this server does not allow that origin",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ApiKeyGuard:
    """Require the key (`Authorization: Bearer KEY` or `X-API-Key: KEY`) on /v1/*; 401 otherwise."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app, self.key = app, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is not None and scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIX):
            given = _header(scope, b"x-api-key")
            auth = _header(scope, b"authorization")
            if given is None and auth is not None and auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
            # compare_digest: the time taken does not reveal how much of a guessed key was right
            if given is None or not hmac.compare_digest(given.encode(), self.key.encode()):
                message = "missing API key" if given is None else "wrong API key"
                response = error_response(
                    401,
                    "unauthorized",
                    f"{message}: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                    {"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a request body over `limit` bytes: at once from Content-Length, or as soon as a streamed
    (chunked) body passes the limit, before the rest is read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def _too_large(self) -> ApiError:
        return ApiError(413, "too_large", f"request body over this server's limit of {self.limit / 1024 / 1024:g} MB")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            error = self._too_large()
            await error_response(error.status, error.code, error.message)(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise self._too_large()  # turned into the 413 response by the app's ApiError handler
            return message

        await self.app(scope, limited, send)
