"""Micro-batching: one worker thread per model gathers waiting images and captions them in one batched pass."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """More images are waiting for this model than the queue holds; the request is refused, not delayed."""


@dataclass
class _Job:
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if self.future.done():  # the client went away and its request was cancelled
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(settle)


@dataclass
class _Caption(_Job):
    image: Image.Image | None = None
    key: Hashable = None  # images with equal keys share decoding and reranking options and a batched decode
    options: dict[str, Any] = field(default_factory=dict)  # Captioner.caption_ids keyword arguments


@dataclass
class _Call(_Job):
    fn: Callable[[], Any] | None = None  # run alone on the worker thread (attention maps)


class ModelWorker:
    """Owns one Captioner: every use of it happens on this worker's thread, so decoding never blocks the event
    loop and two requests never run the same model at once.

    Waiting images are gathered for up to `wait_s` after the oldest arrived, or until `max_batch` are waiting;
    the batch gets one encoder pass, then one batched decode (reranked or not) per distinct set of options.
    """

    def __init__(
        self,
        name: str,
        captioner: Any,
        max_batch: int,
        wait_s: float,
        max_queue: int,
        expecting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.name, self.captioner = name, captioner
        self.max_batch, self.wait_s, self.max_queue = max_batch, wait_s, max_queue
        # whether more images may be on their way (requests still being read); waiting for them when none are
        # only adds latency, e.g. to a lone client's every request
        self.expecting = expecting
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"captionkit-serve-{name}", daemon=True)
        self._thread.start()

    def submit_captions(
        self, images: list[Image.Image], key: Hashable, options: dict[str, Any]
    ) -> list[asyncio.Future]:
        """Queue `images` for captioning with `options`, Captioner.caption_ids's keyword arguments (call from the
        event loop): one future per image, giving its caption. Raises Overloaded, queueing
        none of them, when the queue cannot take them all."""
        loop = asyncio.get_running_loop()
        jobs = [_Caption(loop.create_future(), loop, image=image, key=key, options=options) for image in images]
        self._submit(jobs)
        return [job.future for job in jobs]

    def notify(self) -> None:
        """Wake the worker to re-check `expecting` (a request stopped arriving without submitting anything)."""
        with self._cond:
            self._cond.notify()

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on the worker thread (between batches) and return its result."""
        loop = asyncio.get_running_loop()
        job = _Call(loop.create_future(), loop, fn=fn)
        self._submit([job])
        return await job.future

    def _submit(self, jobs: list[_Job]) -> None:
        with self._cond:
            if self._closed:
                raise Overloaded(f"model {self.name!r} is shutting down")
            if len(self._pending) + len(jobs) > self.max_queue:
                raise Overloaded(
                    f"model {self.name!r} has {len(self._pending)} images waiting (limit "
                    f"{self.max_queue}); retry shortly"
                )
            self._pending.extend(jobs)
            self._cond.notify()

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None  # closed and drained
            if isinstance(self._pending[0], _Call):
                return [self._pending.popleft()]
            deadline = self._pending[0].enqueued + self.wait_s
            while len(self._pending) < self.max_batch and not self._closed and self.expecting():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch: list[_Job] = []
            while self._pending and len(batch) < self.max_batch and isinstance(self._pending[0], _Caption):
                batch.append(self._pending.popleft())
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if isinstance(batch[0], _Call):
                self._run_call(batch[0])  # type: ignore[arg-type]
            else:
                self._run_captions(batch)  # type: ignore[arg-type]

    def _run_call(self, job: _Call) -> None:
        try:
            job.finish(job.fn())
        except Exception as exc:  # noqa: BLE001 - the request that asked gets the error, the worker goes on
            job.finish(error=exc)

    def _run_captions(self, batch: list[_Caption]) -> None:
        try:
            features = self.captioner.encode([job.image for job in batch])  # (B, *feature_shape), one pass
        except Exception as exc:  # noqa: BLE001 - one bad image must not fail the others: retry them one by one
            if len(batch) == 1:
                batch[0].finish(error=exc)
                return
            log.warning(
                "%s: batched encoding failed (%s); encoding the %d images one by one", self.name, exc, len(batch)
            )
            for job in batch:
                self._run_captions([job])
            return
        groups: dict[Hashable, list[int]] = {}
        for i, job in enumerate(batch):
            groups.setdefault(job.key, []).append(i)
        for rows in groups.values():
            try:
                # the step Captioner.caption runs: plain decoding, or CLIP reranking of the candidates
                ids = self.captioner.caption_ids(
                    features[rows], [batch[i].image for i in rows], **batch[rows[0]].options
                )
                for i, text in zip(rows, self.captioner.decode(ids)):
                    batch[i].finish(text)
            except Exception as exc:  # noqa: BLE001 - those requests get the error, the worker goes on
                for i in rows:
                    batch[i].finish(error=exc)
