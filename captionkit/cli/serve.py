"""`captionkit serve MODEL_DIR...`: the captioning web service and page on 127.0.0.1 (see captionkit.serve)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from pathlib import Path

from captionkit.cli.common import add_device_argument, add_dtype_arguments
from captionkit.errors import ConfigError

API_KEY_ENV = "CAPTIONKIT_API_KEY"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve models over HTTP: a JSON API and a web page",
        description="Serve captioning models: GET / (page), GET /v1/models, POST /v1/captions, "
        "POST /v1/attention, GET /healthz. Stops gracefully on Ctrl-C / SIGTERM.",
    )
    p.add_argument(
        "models", nargs="+", metavar="MODEL_DIR", help="model directories, named by the directory's name or as NAME=DIR"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1); any non-loopback address needs an API key",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key",
        default=None,
        help=f"require this key on /v1/* (Authorization: Bearer KEY); default: ${API_KEY_ENV}",
    )
    p.add_argument("--max-batch", type=int, default=16, help="images per batched pass (1 = no micro-batching)")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="how long to wait for more images before running a batch (default 5)",
    )
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body (default 20)")
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow cross-origin requests from ORIGIN, e.g. https://example.org (repeatable)",
    )
    add_device_argument(p)
    p.add_argument(
        "--rerank-clip",
        action="append",
        default=[],
        metavar="SPEC",
        help="a CLIP 'clip:HUB_ID_OR_DIR' that requests may name as rerank_clip (repeatable; loaded "
        "with the models). Without one, requests rerank only with a model's own CLIP (ClipCap)",
    )
    add_dtype_arguments(p, max_pixels=False)  # uploads have their own pixel limit in the server's settings
    p.set_defaults(func=run)


def parse_model_specs(specs: list[str]) -> dict[str, Path]:
    """`DIR` or `NAME=DIR` -> {name: directory}; names must be unique, URL-safe and not 'all'."""
    from captionkit.models.model_dir import read_model_config
    from captionkit.serve.models import ALL

    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, directory = spec.partition("=")
        path = Path(directory if sep else spec)
        name = name if sep else path.resolve().name
        if not _NAME.match(name) or name == ALL:
            raise ConfigError(
                f"{spec}: model name {name!r} must be letters, digits, '.', '_' or '-' and not "
                f"{ALL!r}; name it with NAME=DIR"
            )
        if name in models:
            raise ConfigError(f"{spec}: two models are named {name!r}; name them with NAME=DIR")
        read_model_config(path)  # a wrong directory fails now, in one line, not in the server's log
        models[name] = path
    return models


def check_host(host: str, api_key: str | None) -> None:
    """Refuse to expose the server beyond this machine without an API key."""
    if api_key:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"--host {host}: serving beyond this machine needs an API key; pass --api-key KEY or set "
            f"{API_KEY_ENV} (or bind 127.0.0.1)"
        )


def run(args: argparse.Namespace) -> int:
    from captionkit.errors import require

    require("fastapi", extra="serve")
    uvicorn = require("uvicorn", extra="serve")

    from captionkit.serve import ServeSettings, create_app

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_host(args.host, api_key)
    models = parse_model_specs(args.models)
    settings = ServeSettings(
        api_key=api_key,
        allow_origins=args.allow_origin,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_upload_mb=args.max_upload_mb,
        device=args.device,
        rerank_clips=args.rerank_clip,
        dtype=args.precision_dtype,
        quantize=args.quantize,
    )
    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop(exc: BaseException) -> None:
        failure.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(models, settings, on_load_error=stop)
    # uvicorn's own graceful shutdown: on SIGINT/SIGTERM it stops accepting connections and lets in-flight
    # requests finish (up to 60 s) before the app's shutdown drains the model workers.
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=60)
    )
    print(f"captionkit: serving {', '.join(models)} on http://{args.host}:{args.port}/", flush=True)
    server.run()
    if failure:
        raise ConfigError(f"the server stopped: loading the models failed: {failure[0]}")
    return 0
