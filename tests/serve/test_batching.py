"""Micro-batching: concurrent requests share one encoder pass, options split decodes, a bad image fails alone."""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager

from PIL import Image
from serve_helpers import image_bytes, make_client

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def post_together(client, requests: list[dict]) -> list:
    """Send every request at once from its own thread; responses in the same order."""
    responses: list = [None] * len(requests)

    def send(i: int) -> None:
        responses[i] = client.post("/v1/captions", **requests[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return responses


@contextmanager
def batched(captioners, max_batch: int = 3):
    """A client whose workers wait (up to 20 s) until `max_batch` images are queued: requests sent together from
    threads share a batch however the threads are scheduled."""
    with make_client(captioners, max_batch=max_batch, batch_wait_ms=20_000) as client:
        assert client.app.state.pool.wait(60)
        for model in client.app.state.pool.models.values():
            model.worker.expecting = lambda: True
        yield client


def upload(name: str, data: bytes, **fields) -> dict:
    return {"files": [("image", (name, data, "image/png"))], "data": {"model": "clipcap", **fields}}


def spy(monkeypatch, captioner, method: str, before=None) -> list:
    """Record each call's argument sizes (and run `before(args)` first) while the real method does the work."""
    calls: list = []
    real = getattr(captioner, method)

    def wrapped(*args, **kwargs):
        calls.append((len(args[0]), kwargs))
        if before is not None:
            before(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(captioner, method, wrapped)
    return calls


def test_a_corrupt_image_among_valid_ones_fails_only_its_own_request(captioners, monkeypatch):
    captioner = captioners["clipcap"]
    encodes = spy(monkeypatch, captioner, "encode")
    images = [image_bytes(c) for c in COLOURS]
    expected = [captioner.caption(Image.open(io.BytesIO(data)))[0] for data in images]
    encodes.clear()
    # a long wait: the batch runs only once max_batch (3) images are waiting, so the three share it
    with batched(captioners) as client:
        requests = [upload(f"{i}.png", data) for i, data in enumerate(images)]
        requests.insert(1, upload("broken.png", images[0][:60]))
        responses = post_together(client, requests)
    broken = responses.pop(1)
    assert broken.status_code == 400 and broken.json()["error"]["message"].startswith("broken.png:")
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["captions"][0]["caption"] for r in responses] == expected
    assert [size for size, _ in encodes] == [3]  # one encoder pass for the three valid images


def test_requests_with_different_options_share_the_encoder_but_decode_apart(captioners, monkeypatch):
    captioner = captioners["clipcap"]
    encodes = spy(monkeypatch, captioner, "encode")
    generates = spy(monkeypatch, captioner, "generate")
    images = [image_bytes(c) for c in COLOURS]
    with batched(captioners) as client:
        responses = post_together(
            client,
            [
                upload("a.png", images[0], num_beams="2"),
                upload("b.png", images[1]),
                upload("c.png", images[2], num_beams="2"),
            ],
        )
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [size for size, _ in encodes] == [3]
    assert sorted((size, kw["num_beams"]) for size, kw in generates) == [(1, 1), (2, 2)]
    solo = captioner.caption(Image.open(io.BytesIO(images[0])), num_beams=2)[0]
    assert responses[0].json()["captions"][0]["caption"] == solo


def test_an_image_that_breaks_the_encoder_fails_alone(captioners, monkeypatch):
    def refuse_odd(args):
        if any(image.size == (13, 13) for image in args[0]):
            raise RuntimeError("encoder cannot take a 13x13 image")

    encodes = spy(monkeypatch, captioners["clipcap"], "encode", before=refuse_odd)
    with batched(captioners) as client:
        responses = post_together(
            client,
            [
                upload("a.png", image_bytes(COLOURS[0])),
                upload("odd.png", image_bytes(size=(13, 13))),
                upload("c.png", image_bytes(COLOURS[2])),
            ],
        )
        assert client.get("/healthz").status_code == 200  # the worker and the server carry on
        three = [("image", (f"{i}.png", image_bytes(c), "image/png")) for i, c in enumerate(COLOURS)]
        assert client.post("/v1/captions", files=three).status_code == 200  # a full batch of its own
    assert [r.status_code for r in responses] == [200, 500, 200]
    assert responses[1].json()["error"]["code"] == "internal"
    assert [size for size, _ in encodes][:4] == [3, 1, 1, 1]  # the batch failed, then each image alone


def test_a_lone_request_does_not_wait_for_a_batch(captioners, monkeypatch):
    encodes = spy(monkeypatch, captioners["clipcap"], "encode")
    # a 10-minute batch wait: were the worker to wait for company that is not coming, this would hang
    with make_client(captioners, max_batch=3, batch_wait_ms=600_000) as client:
        assert client.app.state.pool.wait(60)
        for colour in COLOURS:
            assert client.post("/v1/captions", **upload("a.png", image_bytes(colour))).status_code == 200
    assert [size for size, _ in encodes] == [1, 1, 1]


def test_requests_with_different_rerank_settings_are_batched_apart(rerank_captioners, monkeypatch):
    """Three requests in one batch: reranked with w=1, plain, reranked with w=0 and 2 candidates. One encoder pass,
    three decodes, and each gets the caption Captioner.caption gives it alone."""
    captioner = rerank_captioners["clipcap"]
    images = [image_bytes(c) for c in COLOURS]
    settings = [
        {"rerank": "clip", "rerank_weight": "1", "rerank_candidates": "4"},
        {},
        {"rerank": "clip", "rerank_weight": "0", "rerank_candidates": "2"},
    ]
    keywords = [
        {"rerank": "clip", "rerank_weight": 1.0, "rerank_candidates": 4},
        {},
        {"rerank": "clip", "rerank_weight": 0.0, "rerank_candidates": 2},
    ]
    expected = [captioner.caption(Image.open(io.BytesIO(data)), **kw)[0] for data, kw in zip(images, keywords)]
    with batched(rerank_captioners) as client:
        # a first reranked request (a full batch) loads the model's reranker, so the three below queue only images
        warm = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
        assert client.post("/v1/captions", files=warm, data={"model": "clipcap", "rerank": "clip"}).status_code == 200
        encodes = spy(monkeypatch, captioner, "encode")
        decodes = spy(monkeypatch, captioner, "caption_ids")
        responses = post_together(
            client, [upload(f"{i}.png", data, **fields) for i, (data, fields) in enumerate(zip(images, settings))]
        )
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [size for size, _ in encodes] == [3]
    reranks = [(size, kw["rerank"] and (kw["rerank"].weight, kw["rerank"].candidates)) for size, kw in decodes]
    assert sorted(reranks, key=repr) == [(1, (0.0, 2)), (1, (1.0, 4)), (1, None)]
    assert [r.json()["captions"][0]["caption"] for r in responses] == expected
