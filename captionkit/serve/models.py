"""The models a server holds: loaded once (in the background, so the server answers 503 meanwhile), each with
its micro-batching worker."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Union

from captionkit.config import to_dict
from captionkit.errors import ConfigError
from captionkit.inference.captioner import Captioner
from captionkit.inference.rerank import RerankConfig
from captionkit.serve.batcher import ModelWorker
from captionkit.serve.errors import ApiError
from captionkit.serve.settings import ServeSettings

log = logging.getLogger(__name__)

ALL = "all"  # the `model` value that asks every loaded model
ModelSource = Union[Captioner, str, "os.PathLike[str]"]


@dataclass
class ServedModel:
    name: str
    captioner: Captioner
    worker: ModelWorker
    # CLIP spec (None: the model's encoder) -> None when this model reranks with it, else why not (a ConfigError's
    # message); changed on the event loop only
    rerankers: dict[str | None, str | None] = field(default_factory=dict)

    @property
    def has_attention(self) -> bool:
        from captionkit.models.show_attend_tell import ShowAttendTell

        return isinstance(self.captioner.model, ShowAttendTell)

    async def check_reranker(self, config: RerankConfig) -> None:
        """422 unless this model can rerank as `config` says (a VGG-family model needs a CLIP named). The first
        request for a CLIP loads the model's reranker on the worker thread (Captioner.reranker keeps it)."""
        if config.clip not in self.rerankers:
            try:
                await self.worker.call(lambda: self.captioner.reranker(config))
                self.rerankers[config.clip] = None
            except ConfigError as exc:
                self.rerankers[config.clip] = str(exc)
        problem = self.rerankers[config.clip]
        if problem is not None:
            raise ApiError(422, "invalid_option", f"model {self.name!r}: {problem}")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.captioner.model.model_type,
            "encoder": self.captioner.config.get("encoder"),
            "attention": self.has_attention,
            "default_decoding": to_dict(self.captioner.decoding),
        }


def load_captioner(
    source: ModelSource, device: str | None, rerank_clips: Sequence[str] = (), precision: dict[str, str] | None = None
) -> Captioner:
    """A Captioner as given, or loaded from a model directory (in `precision`: captionkit.load's dtype / quantize)
    with its encoder built now (not on first request), and a reranker for each of `rerank_clips` (CLIP specs the
    server offers: a bad one fails start-up)."""

    captioner = (
        source
        if isinstance(source, Captioner)
        else Captioner.from_dir(os.fspath(source), device=device, **(precision or {}))
    )
    _ = captioner.encoder  # build (and fail on) the encoder at start-up
    for clip in rerank_clips:
        try:
            captioner.reranker(RerankConfig(clip=clip))
        except ConfigError as exc:
            if clip in str(exc):
                raise
            raise ConfigError(f"rerank clip {clip!r}: {exc}") from None
    return captioner


class ModelPool:
    """Name -> ServedModel once loading has finished; until then every lookup is a 503."""

    def __init__(
        self,
        sources: Mapping[str, ModelSource],
        settings: ServeSettings,
        on_load_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if not sources:
            raise ValueError("a server needs at least one model")
        self.sources, self.settings, self.on_load_error = dict(sources), settings, on_load_error
        self.models: dict[str, ServedModel] = {}
        self.arriving = 0  # caption requests being read, not yet queued (changed on the event loop only)
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load, name="captionkit-serve-load", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def _load(self) -> None:
        s = self.settings
        try:
            loaded = {}
            for name, source in self.sources.items():
                captioner = load_captioner(source, s.device, s.rerank_clips, s.precision_options)
                worker = ModelWorker(
                    name,
                    captioner,
                    s.max_batch,
                    s.batch_wait_ms / 1000,
                    s.max_queue,
                    expecting=lambda: self.arriving > 0,
                )
                loaded[name] = ServedModel(name, captioner, worker, dict.fromkeys(s.rerank_clips))
                log.info("model %r loaded (%s)", name, captioner.model.model_type)
            self.models = loaded
            self._ready.set()
        except BaseException as exc:  # noqa: BLE001 - reported through /v1/* (503) and on_load_error
            self.error = exc
            log.error("loading the models failed: %s", exc)
            if self.on_load_error is not None:
                self.on_load_error(exc)

    def _check_ready(self) -> None:
        if self.error is not None:
            raise ApiError(503, "load_failed", f"the models could not be loaded: {self.error}")
        if not self.ready:
            raise ApiError(503, "loading", "the models are still loading; retry shortly", {"Retry-After": "2"})

    def all(self) -> list[ServedModel]:
        self._check_ready()
        return list(self.models.values())

    def select(self, name: str | None) -> list[ServedModel]:
        """`None`: the first model; `all`: every model; else the one named (404 with the valid names)."""
        models = self.all()
        if name is None or name == "":
            return models[:1]
        if name == ALL:
            return models
        if name not in self.models:
            raise ApiError(404, "unknown_model", f"unknown model {name!r}; loaded: {sorted(self.models)} (or {ALL!r})")
        return [self.models[name]]

    @contextmanager
    def arrival(self) -> Iterator[None]:
        """Around reading a caption request up to queueing its images: workers wait for it to batch with others."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1
            for model in self.models.values():
                model.worker.notify()

    def close(self) -> None:
        """Let every worker finish its queue (in-flight requests get their answers), then stop it."""
        for model in self.models.values():
            model.worker.close(timeout=60)
