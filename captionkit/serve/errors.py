"""The server's error responses: one exception type carrying the HTTP status, and the JSON shape clients read."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    """A request that gets `{"error": {"code": ..., "message": ...}}` with `status` (raised anywhere in a route)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
