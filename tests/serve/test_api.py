"""The HTTP API in-process: every route, every error status, and that errors never leak into other requests."""

from __future__ import annotations

import base64
import struct
import threading
import zlib

import pytest
from serve_helpers import image_bytes, make_client

from captionkit.serve import models as serve_models

RED, BLUE = image_bytes((200, 30, 30)), image_bytes((20, 40, 220), size=(40, 70), fmt="JPEG")


def files(*items):
    return [("image", (name, data, "application/octet-stream")) for name, data in items]


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape, without the pixels)."""
    png = bytearray(image_bytes(size=(4, 4)))
    ihdr = png[12:29]  # b"IHDR" + 13 bytes of fields
    fields = struct.pack(">II", width, height) + bytes(ihdr[12:17])
    body = b"IHDR" + fields
    png[12:29] = body
    png[29:33] = struct.pack(">I", zlib.crc32(body))
    return bytes(png)


def test_healthz_and_models(client, captioners):
    assert client.get("/healthz").json() == {"status": "ok"}
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert list(listed) == ["clipcap", "sat"]
    assert listed["clipcap"]["type"] == "clipcap" and listed["clipcap"]["attention"] is False
    assert listed["sat"]["type"] == "show-attend-tell" and listed["sat"]["attention"] is True
    assert listed["clipcap"]["encoder"] == "clip:captionkit:tiny-clip"
    assert listed["sat"]["default_decoding"]["min_new_tokens"] == 3  # the captioner's own defaults


def test_captions_match_the_python_api_in_upload_order(client, captioners):
    import io

    from PIL import Image

    response = client.post(
        "/v1/captions",
        files=files(("red.png", RED), ("blue.jpg", BLUE)),
        data={"num_beams": "2", "max_new_tokens": "5"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    expected = captioners["clipcap"].caption(
        [Image.open(io.BytesIO(RED)), Image.open(io.BytesIO(BLUE))], num_beams=2, max_new_tokens=5
    )
    assert [(c["image"], c["model"], c["caption"]) for c in body["captions"]] == [
        ("red.png", "clipcap", expected[0]),
        ("blue.jpg", "clipcap", expected[1]),
    ]
    assert body["timing_ms"]["total"] >= body["timing_ms"]["models"]["clipcap"] > 0


def test_model_all_gives_one_entry_per_image_and_model(client):
    body = client.post("/v1/captions", files=files(("a.png", RED), ("b.jpg", BLUE)), data={"model": "all"}).json()
    assert [(c["image"], c["model"]) for c in body["captions"]] == [
        ("a.png", "clipcap"),
        ("a.png", "sat"),
        ("b.jpg", "clipcap"),
        ("b.jpg", "sat"),
    ]
    assert set(body["timing_ms"]["models"]) == {"clipcap", "sat"}
    named = client.post("/v1/captions", files=files(("a.png", RED)), data={"model": "sat"}).json()
    assert named["captions"][0]["caption"] == body["captions"][1]["caption"]


def test_json_base64_input_equals_multipart(client):
    multipart = client.post("/v1/captions", files=files(("a.png", RED)), data={"model": "all"}).json()["captions"]
    encoded = base64.b64encode(RED).decode()
    as_json = client.post(
        "/v1/captions", json={"images": [encoded, "data:image/png;base64," + encoded], "model": "all", "num_beams": 1}
    ).json()["captions"]
    assert [c["image"] for c in as_json] == ["images[0]", "images[0]", "images[1]", "images[1]"]
    assert [c["caption"] for c in as_json] == [c["caption"] for c in multipart] * 2


def test_400_corrupt_image_names_the_upload(client):
    truncated = RED[: len(RED) // 2]
    error = error_of(client.post("/v1/captions", files=files(("good.png", RED), ("half.png", truncated))), 400)
    assert error["code"] == "bad_image" and error["message"].startswith("half.png:")
    error = error_of(client.post("/v1/captions", json={"images": ["not base64!"]}), 400)
    assert error["code"] == "bad_base64" and "images[0]" in error["message"]
    assert (
        error_of(client.post("/v1/captions", content=b"{", headers={"content-type": "application/json"}), 400)["code"]
        == "bad_json"
    )


def test_401_without_the_api_key(captioners):
    with make_client(captioners, api_key="s3cret") as c:
        assert c.app.state.pool.wait(60)
        assert error_of(c.get("/v1/models"), 401)["message"].startswith("missing API key")
        assert error_of(c.post("/v1/captions", files=files(("a.png", RED)), headers={"X-API-Key": "nope"}), 401)[
            "message"
        ].startswith("wrong API key")
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/v1/captions", files=files(("a.png", RED)), headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200  # open: no data there


def test_403_cross_origin_unless_allowed(client, captioners):
    error = error_of(
        client.post("/v1/captions", files=files(("a.png", RED)), headers={"Origin": "https://evil.example"}), 403
    )
    assert error["code"] == "cross_origin_refused"
    same = client.get("/v1/models", headers={"Origin": "http://127.0.0.1:8000"})  # the page's own origin
    assert same.status_code == 200
    with make_client(captioners, allow_origins=["https://app.example"]) as c:
        assert c.app.state.pool.wait(60)
        ok = c.get("/v1/models", headers={"Origin": "https://app.example"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
        assert c.get("/v1/models", headers={"Origin": "https://evil.example"}).status_code == 403


def test_404_unknown_model_lists_the_loaded_ones(client):
    error = error_of(client.post("/v1/captions", files=files(("a.png", RED)), data={"model": "nope"}), 404)
    assert error["code"] == "unknown_model" and "['clipcap', 'sat']" in error["message"]
    assert error_of(client.get("/no/such/route"), 404)["code"] == "not_found"


def test_413_body_pixels_bombs_and_image_count(captioners, client):
    with make_client(captioners, max_upload_mb=0.001, max_pixels=1000, max_images=2) as c:
        assert c.app.state.pool.wait(60)
        big = image_bytes(size=(300, 300), fmt="BMP")  # 270 kB, over 0.001 MB
        assert error_of(c.post("/v1/captions", files=files(("big.bmp", big))), 413)["code"] == "too_large"
        error = error_of(c.post("/v1/captions", files=files(("wide.png", image_bytes(size=(50, 30))))), 413)
        assert error["code"] == "image_too_large" and error["message"].startswith("wide.png: 50x30")
        three = files(("1.png", RED), ("2.png", RED), ("3.png", RED))
        assert error_of(c.post("/v1/captions", files=three), 413)["code"] == "too_many_images"
    bomb = png_header_claiming(40_000, 40_000)  # 1.6 Gpx claimed by a few hundred bytes
    error = error_of(client.post("/v1/captions", files=files(("bomb.png", bomb))), 413)
    assert error["code"] == "image_too_large" and "bomb.png" in error["message"]


def test_413_too_many_images(captioners):
    with make_client(captioners, max_images=2) as c:
        assert c.app.state.pool.wait(60)
        error = error_of(c.post("/v1/captions", json={"images": [base64.b64encode(RED).decode()] * 3}), 413)
        assert error["code"] == "too_many_images"


def test_415_not_an_image_or_not_a_supported_body(client):
    error = error_of(client.post("/v1/captions", files=files(("notes.txt", b"hello, not an image"))), 415)
    assert error["code"] == "not_an_image" and error["message"].startswith("notes.txt:")
    error = error_of(client.post("/v1/captions", content=RED, headers={"content-type": "image/png"}), 415)
    assert error["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"num_beams": "two"}, "num_beams: expected an integer"),
        ({"num_beams": "0"}, "num_beams must be >= 1"),  # DecodingConfig's own check, as for `captionkit caption`
        ({"num_beams": "9"}, "over this server's limit of 8"),
        ({"max_new_tokens": "2"}, "min_new_tokens must be in [0, max_new_tokens]"),
        ({"do_sample": "true", "num_beams": "2"}, "do_sample works with num_beams=1 only"),
        ({"top_p": "nan"}, "top_p: expected a finite number"),
        ({"beam_scoring": "best"}, "beam_scoring must be one of"),
        ({"seed": str(2**64)}, "seed: expected a 64-bit integer"),
        ({"do_sample": "1", "temperature": "1e-300"}, "temperature: 1e-300 is below 0.01"),
        ({"colour": "red"}, "unknown field(s) ['colour']"),
    ],
)
def test_422_bad_decoding_options(client, fields, needle):
    error = error_of(client.post("/v1/captions", files=files(("a.png", RED)), data=fields), 422)
    assert needle in error["message"]


def test_422_json_types_are_strict_and_an_image_is_required(client):
    image = base64.b64encode(RED).decode()
    assert (
        "num_beams: expected an integer"
        in error_of(client.post("/v1/captions", json={"images": [image], "num_beams": "2"}), 422)["message"]
    )
    assert (
        "model: expected a model name"
        in error_of(client.post("/v1/captions", json={"images": [image], "model": 3}), 422)["message"]
    )
    assert error_of(client.post("/v1/captions", json={"images": []}), 422)["code"] == "no_image"
    assert error_of(client.post("/v1/captions", data={"model": "sat"}, files=files()), 415)  # no body parts at all


def test_503_while_loading(tiny_model_dir, monkeypatch):
    release = threading.Event()
    real = serve_models.load_captioner

    def slow(*args):
        release.wait(30)
        return real(*args)

    monkeypatch.setattr(serve_models, "load_captioner", slow)
    with make_client({"m": tiny_model_dir}) as c:
        error = error_of(c.post("/v1/captions", files=files(("a.png", RED))), 503)
        assert error["code"] == "loading" and c.get("/healthz").status_code == 200
        assert error_of(c.get("/v1/models"), 503)["code"] == "loading"
        release.set()
        assert c.app.state.pool.wait(60)
        assert c.post("/v1/captions", files=files(("a.png", RED))).status_code == 200


def test_503_when_the_queue_is_full_and_others_still_served(captioners, monkeypatch):
    gate, entered = threading.Event(), threading.Event()
    captioner = captioners["clipcap"]
    real_encode = captioner.encode

    def held(images):
        entered.set()
        gate.wait(30)
        return real_encode(images)

    monkeypatch.setattr(captioner, "encode", held)
    with make_client(captioners, max_queue=2, max_batch=1, batch_wait_ms=0) as c:
        assert c.app.state.pool.wait(60)
        results = {}
        first = threading.Thread(
            target=lambda: results.setdefault("first", c.post("/v1/captions", files=files(("a.png", RED))))
        )
        first.start()
        assert entered.wait(30)  # the worker is busy with the first image
        queued = threading.Thread(
            target=lambda: results.setdefault(
                "queued", c.post("/v1/captions", files=files(("b.png", RED), ("c.png", RED)))
            )
        )
        queued.start()
        while c.app.state.pool.models["clipcap"].worker._pending.__len__() < 2:
            threading.Event().wait(0.01)
        error = error_of(c.post("/v1/captions", files=files(("d.png", RED))), 503)
        assert error["code"] == "overloaded" and "limit 2" in error["message"]
        assert c.post("/v1/captions", files=files(("e.png", RED)), data={"model": "sat"}).status_code == 200
        gate.set()
        first.join(30)
        queued.join(30)
        assert results["first"].status_code == 200 and results["queued"].status_code == 200


def test_attention_png_and_json(client):
    import io

    from PIL import Image

    response = client.post("/v1/attention", files=files(("a.png", RED)), data={"model": "sat"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    figure = Image.open(io.BytesIO(response.content))
    data = client.post("/v1/attention?format=json", files=files(("a.png", RED))).json()
    assert data["model"] == "sat" and data["image"] == "a.png" and data["grid"] == [7, 7]
    assert len(data["words"]) >= 3 and len(data["weights"]) == len(data["words"])
    assert all(len(row) == 49 and abs(sum(row) - 1) < 1e-4 for row in data["weights"])
    assert data["crop"] == [8, 0, 48]  # the whole 48 px square: the tiny encoder resizes to its crop size
    from captionkit.data.text import tidy_caption
    from captionkit.inference.attention import attention_map_size

    assert figure.size == attention_map_size(len(data["words"]))
    caption = client.post("/v1/captions", files=files(("a.png", RED)), data={"model": "sat"}).json()
    # the same decode: the words joined are the caption (a special token the caption drops shows as "<id N>")
    words = " ".join(w for w in data["words"] if not w.startswith("<id "))
    assert tidy_caption(words) == caption["captions"][0]["caption"]  # captions are detokenised, one final period


def test_attention_errors(client):
    error = error_of(client.post("/v1/attention", files=files(("a.png", RED)), data={"model": "clipcap"}), 422)
    assert error["code"] == "no_attention" and "show-attend-tell" in error["message"]
    assert (
        error_of(client.post("/v1/attention", files=files(("a.png", RED), ("b.png", RED))), 422)["code"] == "one_image"
    )
    assert error_of(client.post("/v1/attention?format=gif", files=files(("a.png", RED))), 422)
    assert error_of(client.post("/v1/attention", files=files(("x.png", b"junk"))), 415)


def test_the_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    for asset, kind in (("/static/page.js", "javascript"), ("/static/page.css", "css")):
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert "https://" not in response.text


def test_413_a_streamed_body_is_cut_off_at_the_limit(captioners):
    sent = []

    def chunks():
        for _ in range(100):
            sent.append(1)
            yield b"x" * 1024

    with make_client(captioners, max_upload_mb=0.01) as c:  # 10 kB
        assert c.app.state.pool.wait(60)
        response = c.post("/v1/captions", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert error_of(response, 413)["code"] == "too_large"
