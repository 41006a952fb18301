"""CLIP reranking over HTTP: the fields of `captionkit caption --rerank`, the captions Captioner.caption gives, and
a 422 for every bad value (a VGG-family model without a CLIP, a CLIP the server does not offer)."""

from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image
from serve_helpers import image_bytes, make_client

from captionkit.inference import rerank as rerank_module

RED, GREEN = image_bytes((200, 30, 30)), image_bytes((30, 200, 30), size=(40, 70), fmt="JPEG")


@pytest.fixture()
def client(rerank_captioners, clip_dir):
    with make_client(rerank_captioners, max_beams=5, rerank_clips=[f"clip:{clip_dir}"]) as c:
        assert c.app.state.pool.wait(60)
        yield c


def files(*items):
    return [("image", (name, data, "image/png")) for name, data in items]


def pil(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def error_message(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["message"]


def test_a_reranked_request_gets_the_python_apis_caption(client, rerank_captioners, monkeypatch):
    captioner = rerank_captioners["clipcap"]
    chosen = []  # the server must rerank through captionkit.inference.rerank, not decode plainly
    real_choose = rerank_module.ClipReranker.choose
    monkeypatch.setattr(
        rerank_module.ClipReranker, "choose", lambda self, *args: chosen.append(self.config) or real_choose(self, *args)
    )
    response = client.post(
        "/v1/captions",
        files=files(("red.png", RED), ("green.jpg", GREEN)),
        data={"rerank": "clip", "rerank_weight": "1", "rerank_candidates": "4"},
    )
    assert response.status_code == 200, response.text
    assert [c["image"] for c in response.json()["captions"]] == ["red.png", "green.jpg"]
    assert chosen and chosen[0].weight == 1.0 and chosen[0].candidates == 4
    chosen.clear()
    expected = captioner.caption([pil(RED), pil(GREEN)], rerank="clip", rerank_weight=1.0, rerank_candidates=4)
    assert [c["caption"] for c in response.json()["captions"]] == expected
    # JSON, with a decoding option beside the reranking ones
    body = {
        "images": [base64.b64encode(RED).decode()],
        "rerank": "clip",
        "rerank_weight": 0.3,
        "rerank_candidates": 3,
        "max_new_tokens": 4,
    }
    response = client.post("/v1/captions", json=body)
    assert response.status_code == 200, response.text
    assert [c["caption"] for c in response.json()["captions"]] == captioner.caption(
        pil(RED), rerank="clip", rerank_weight=0.3, rerank_candidates=3, max_new_tokens=4
    )


def test_a_vgg_family_model_reranks_only_with_a_clip_the_server_offers(client, rerank_captioners, clip_dir):
    message = error_message(
        client.post("/v1/captions", files=files(("red.png", RED)), data={"model": "sat", "rerank": "clip"})
    )
    assert message.startswith("model 'sat': CLIP reranking needs a CLIP with a text tower")
    assert "rerank_clip" in message
    # with model=all the ClipCap could rerank, the Show-Attend-Tell model cannot: the request is refused whole
    assert "model 'sat'" in error_message(
        client.post("/v1/captions", files=files(("red.png", RED)), data={"model": "all", "rerank": "clip"})
    )
    spec = f"clip:{clip_dir}"
    response = client.post(
        "/v1/captions",
        files=files(("red.png", RED)),
        data={"model": "sat", "rerank": "clip", "rerank_clip": spec, "rerank_candidates": "3"},
    )
    assert response.status_code == 200, response.text
    assert (
        response.json()["captions"][0]["caption"]
        == rerank_captioners["sat"].caption(pil(RED), rerank="clip", rerank_clip=spec, rerank_candidates=3)[0]
    )


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"rerank": "bleu"}, "rerank='bleu'; valid: clip"),
        ({"rerank": "clip", "rerank_weight": "1.5"}, "rerank weight must be in [0, 1], got 1.5"),
        ({"rerank": "clip", "rerank_weight": "-0.1"}, "rerank weight must be in [0, 1]"),
        ({"rerank": "clip", "rerank_weight": "nan"}, "rerank_weight: expected a finite number"),
        ({"rerank": "clip", "rerank_candidates": "0"}, "rerank candidates must be >= 1, got 0"),
        ({"rerank": "clip", "rerank_candidates": "6"}, "rerank_candidates: 6 is over this server's limit of 5"),
        ({"rerank": "clip", "rerank_candidates": "two"}, "rerank_candidates: expected an integer"),
        ({"rerank_weight": "0.5"}, "rerank_weight given without rerank='clip'"),
        ({"rerank": "clip", "rerank_clip": "clip:/etc"}, "rerank_clip: 'clip:/etc' is not a CLIP this server reranks"),
    ],
)
def test_bad_rerank_values_are_422(client, fields, expected):
    message = error_message(client.post("/v1/captions", files=files(("red.png", RED)), data=fields))
    assert expected in message


def test_rerank_json_types_and_the_attention_route(client):
    image = base64.b64encode(RED).decode()
    assert "rerank_candidates: expected an integer" in error_message(
        client.post("/v1/captions", json={"images": [image], "rerank": "clip", "rerank_candidates": "3"})
    )
    assert "rerank: expected a string" in error_message(
        client.post("/v1/captions", json={"images": [image], "rerank": True})
    )
    # attention maps come from one decoded caption: reranking is not one of its fields
    response = client.post("/v1/attention", files=files(("red.png", RED)), data={"rerank": "clip"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_field"


def test_a_server_without_offered_clips_refuses_any_rerank_clip(rerank_captioners, clip_dir):
    with make_client(rerank_captioners) as c:
        assert c.app.state.pool.wait(60)
        message = error_message(
            c.post(
                "/v1/captions",
                files=files(("red.png", RED)),
                data={"rerank": "clip", "rerank_clip": f"clip:{clip_dir}"},
            )
        )
        assert "it offers none" in message  # a client never makes the server load a model


def test_an_offered_clip_that_cannot_rerank_fails_start_up(rerank_captioners):
    with make_client(rerank_captioners, rerank_clips=["vgg16:fc2"]) as c:
        while c.app.state.pool.error is None and not c.app.state.pool.ready:
            time.sleep(0.05)
        assert "expected a CLIP spec" in str(c.app.state.pool.error)
        assert c.post("/v1/captions", files=files(("red.png", RED))).status_code == 503
