"""The FastAPI app: routes over the model pool, error handlers, guards and the page (see create_app)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse, JSONResponse, Response

from captionkit.decoding import DECODING_OPTIONS
from captionkit.inference.rerank import RERANK_OPTIONS
from captionkit.serve import schemas
from captionkit.serve.batcher import Overloaded
from captionkit.serve.errors import ApiError, error_response
from captionkit.serve.models import ALL, ModelPool, ModelSource, ServedModel
from captionkit.serve.options import batch_key, parse_options, resolve, resolve_rerank
from captionkit.serve.security import ApiKeyGuard, BodyLimit, OriginGuard
from captionkit.serve.settings import ServeSettings
from captionkit.serve.uploads import decode_images, read_request
from captionkit.version import __version__

log = logging.getLogger(__name__)

FIELDS = {"model", *DECODING_OPTIONS}  # what an attention request may send besides its image
CAPTION_FIELDS = FIELDS | set(RERANK_OPTIONS)  # and a captions request
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ERRORS = schemas.error_responses(400, 401, 403, 404, 413, 415, 422, 503)


def _static(name: str) -> str:
    return resources.files("captionkit.serve").joinpath("static", name).read_text(encoding="utf-8")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _model_field(fields: dict[str, Any]) -> str | None:
    name = fields.get("model")
    if name is not None and not isinstance(name, str):
        raise ApiError(422, "invalid_option", f"model: expected a model name, got {name!r}")
    return name


def create_app(
    models: Mapping[str, ModelSource],
    settings: ServeSettings | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """A captioning server for `models` (name -> Captioner, or a model directory loaded in the background while
    /v1/* answers 503). `on_load_error` is called if loading fails (the CLI stops the server then)."""
    settings = settings or ServeSettings()
    pool = ModelPool(models, settings, on_load_error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.start()
        yield
        await asyncio.to_thread(pool.close)  # uvicorn has already let in-flight requests finish

    app = FastAPI(
        title="captionkit",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # their pages load scripts from a CDN
        description='Image captioning with captionkit models. Errors are `{"error": {"code": ..., "message": ...}}`.',
    )
    app.state.pool, app.state.settings = pool, settings
    _add_error_handlers(app)
    # Added innermost first: a request meets the origin check, then the key, then the body limit.
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(ApiKeyGuard, api_key=settings.api_key)
    app.add_middleware(OriginGuard, allow_origins=settings.allow_origins)
    if settings.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )

    @app.get("/", response_class=HTMLResponse, summary="The captioning page")
    def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"), headers={"Content-Security-Policy": _PAGE_CSP})

    @app.get("/static/page.js", include_in_schema=False)
    def page_js() -> Response:
        return Response(_static("page.js"), media_type="text/javascript")

    @app.get("/static/page.css", include_in_schema=False)
    def page_css() -> Response:
        return Response(_static("page.css"), media_type="text/css")

    @app.get("/healthz", response_model=schemas.Health, summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/v1/models",
        response_model=schemas.ModelList,
        responses=schemas.error_responses(401, 403, 503),
        summary="The loaded models",
    )
    def list_models() -> dict[str, Any]:
        return {"models": [m.describe() for m in pool.all()]}

    @app.post(
        "/v1/captions",
        response_model=schemas.CaptionsResponse,
        responses=_ERRORS,
        openapi_extra=schemas.request_body(multiple=True),
        summary="Caption images",
    )
    async def captions(request: Request) -> dict[str, Any]:
        start = time.perf_counter()
        with pool.arrival():
            parsed = await read_request(request, settings, CAPTION_FIELDS)
            chosen = pool.select(_model_field(parsed.fields))
            options = parse_options(parsed.fields, parsed.from_form)
            configs = {m.name: resolve(m.captioner.decoding, options, settings) for m in chosen}
            rerank = resolve_rerank(options, settings)
            try:
                for m in chosen if rerank is not None else ():
                    await m.check_reranker(rerank)
            except Overloaded as exc:
                raise ApiError(503, "overloaded", str(exc), {"Retry-After": "1"}) from None
            images = await decode_images(parsed.uploads, settings)
            read_ms = _ms(start)
            try:
                queued = [
                    m.worker.submit_captions(
                        images,
                        batch_key(configs[m.name], rerank),
                        {**dataclasses.asdict(configs[m.name]), "rerank": rerank},
                    )
                    for m in chosen
                ]
            except Overloaded as exc:
                raise ApiError(503, "overloaded", str(exc), {"Retry-After": "1"}) from None

        async def finish(futures: list[asyncio.Future]) -> tuple[list[str], float]:
            texts = await asyncio.gather(*futures)
            return list(texts), _ms(start)

        results = await asyncio.gather(*(finish(futures) for futures in queued))
        entries = [
            {"image": upload.name, "model": model.name, "caption": texts[i]}
            for i, upload in enumerate(parsed.uploads)
            for model, (texts, _) in zip(chosen, results)
        ]
        timing = {"total": _ms(start), "read": read_ms, "models": {m.name: ms for m, (_, ms) in zip(chosen, results)}}
        return {"captions": entries, "timing_ms": timing}

    @app.post(
        "/v1/attention",
        responses={
            200: {
                "model": schemas.AttentionResponse,
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                "description": "PNG: the image, then one heat-map panel per word; JSON: the weights",
            },
            **_ERRORS,
        },
        response_class=Response,
        openapi_extra=schemas.request_body(multiple=False),
        summary="Per-word attention of a Show-Attend-Tell model",
    )
    async def attention(
        request: Request, format: Literal["png", "json"] = Query("png", description="png or json")
    ) -> Response:
        from captionkit.inference.attention import (
            attention_figure,
            attention_grid,
            caption_with_attention,
            crop_fraction_of,
            encoder_crop,
        )

        parsed = await read_request(request, settings, FIELDS)
        if len(parsed.uploads) != 1:
            raise ApiError(422, "one_image", f"attention takes exactly one image, got {len(parsed.uploads)}")
        model = _attention_model(pool, _model_field(parsed.fields))
        config = resolve(model.captioner.decoding, parse_options(parsed.fields, parsed.from_form), settings)
        [image] = await decode_images(parsed.uploads, settings)
        try:
            words, weights = await model.worker.call(
                lambda: caption_with_attention(model.captioner, image, **dataclasses.asdict(config))
            )
        except Overloaded as exc:
            raise ApiError(503, "overloaded", str(exc), {"Retry-After": "1"}) from None
        if format == "json":
            left, top, side = encoder_crop(image.size, crop_fraction_of(model.captioner))
            return JSONResponse(
                {
                    "model": model.name,
                    "image": parsed.uploads[0].name,
                    "words": words,
                    "grid": list(attention_grid(weights)),
                    "weights": weights.tolist(),
                    "crop": [left, top, side],
                }
            )

        def png() -> bytes:
            buffer = io.BytesIO()
            attention_figure(image, words, weights, crop_fraction=crop_fraction_of(model.captioner)).save(
                buffer, format="PNG"
            )
            return buffer.getvalue()

        return Response(await asyncio.to_thread(png), media_type="image/png")

    return app


def _attention_model(pool: ModelPool, name: str | None) -> ServedModel:
    """The model named, which must have attention; by default the first model that has it."""
    if name is None or name == "":
        found = [m for m in pool.all() if m.has_attention]
        if not found:
            raise ApiError(
                422, "no_attention", "no loaded model has attention weights (a show-attend-tell model is needed)"
            )
        return found[0]
    if name == ALL:
        raise ApiError(422, "no_attention", f"attention maps come from one model: name it instead of {ALL!r}")
    [model] = pool.select(name)
    if not model.has_attention:
        raise ApiError(
            422,
            "no_attention",
            f"model {name!r} ({model.captioner.model.model_type}) has no attention "
            "weights; attention maps need a show-attend-tell model",
        )
    return model


def _add_error_handlers(app: FastAPI) -> None:
    from http import HTTPStatus

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("request failed: %s %s", request.method, request.url.path)
        return error_response(
            500, "internal", f"the server failed on this request ({type(exc).__name__}); see the server log"
        )
