"""The page in headless Chromium against a real server: captions from two models, attention, an error shown."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.serve import ServeSettings, create_app


@pytest.fixture()
def server_url(captioners):
    """uvicorn in a thread on a free loopback port, serving both tiny models."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(captioners, ServeSettings())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (server.started and app.state.pool.ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started and app.state.pool.ready
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_page_captions_two_models_shows_attention_and_errors(browser, server_url, tmp_path):
    demo = write_synthetic_dataset(tmp_path / "demo", images=1, seed=0)
    photo = sorted((demo / "Images").iterdir())[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo.read_bytes()[:200])  # a cut-off JPEG

    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(server_url)
    page.wait_for_selector("#status:has-text('2 model(s): clipcap, sat')")

    page.set_input_files("#file", str(photo))
    rows = page.locator(".card tbody tr")
    rows.nth(1).wait_for()
    assert [rows.nth(i).get_attribute("data-model") for i in range(rows.count())] == ["clipcap", "sat"]
    api = httpx.post(
        server_url + "/v1/captions", files={"image": (photo.name, photo.read_bytes())}, data={"model": "all"}
    ).json()["captions"]
    for i in range(2):  # what the page shows is what the API says (random tiny models: any text, maybe empty)
        assert rows.nth(i).locator("td.caption").inner_text().startswith(api[i]["caption"])
        assert rows.nth(i).locator("td.latency").inner_text().endswith(" ms")

    toggle = page.locator("button.attention-toggle")
    assert toggle.count() == 1  # only the Show-Attend-Tell model has one
    toggle.focus()
    page.keyboard.press("Enter")  # keyboard accessible
    words = page.locator(".words button")
    words.first.wait_for()
    assert page.locator(".card canvas.heat").is_visible()
    assert words.count() >= 3 and toggle.get_attribute("aria-pressed") == "true"
    words.nth(1).click()
    assert words.nth(1).get_attribute("aria-pressed") == "true"
    heat = page.evaluate(
        "() => { const c = document.querySelector('canvas.heat');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s / (d.length / 4); }"
    )
    assert heat > 0  # something was drawn
    page.screenshot(path=str(tmp_path / "serve-page-attention.png"), full_page=True)

    page.set_input_files("#file", str(broken))
    error = page.locator(".card .error")
    error.wait_for()
    assert error.inner_text().startswith("broken.jpg:") and page.locator(".card").count() == 2
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    page.screenshot(path=str(tmp_path / "serve-page.png"), full_page=True)
    assert (tmp_path / "serve-page.png").stat().st_size > 0

    # the 400 of the broken upload is the only failed load Chromium reports; the page's own code logs nothing
    failed_loads = [m for m in console if m.startswith("Failed to load resource")]
    assert [m for m in console if m not in failed_loads] == []
    assert all("status of 400" in m for m in failed_loads)
    assert all(url.startswith((server_url, "blob:", "data:")) for url in requests)  # nothing from elsewhere
    page.close()
