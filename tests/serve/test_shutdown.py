"""A real `captionkit serve` process on 127.0.0.1: SIGTERM lets the request being decoded finish, then exits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from serve_helpers import image_bytes

REPO = Path(__file__).resolve().parents[2]
# The real CLI, with decoding slowed down and announced, so the test knows a request is in flight when it signals.
SLOW_SERVER = """
import sys, time
from pathlib import Path
from captionkit.inference.captioner import Captioner
real = Captioner.generate
def slow_generate(self, *args, **kwargs):
    Path(sys.argv[1]).touch()
    time.sleep(2)
    return real(self, *args, **kwargs)
Captioner.generate = slow_generate
from captionkit.cli import main
sys.exit(main(sys.argv[2:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not come up")


def test_sigterm_drains_in_flight_requests(tmp_path, tiny_model_dir):
    port, marker = free_port(), tmp_path / "decoding-started"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVER, str(marker), "serve", f"tiny={tiny_model_dir}", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
        result = {}

        def caption() -> None:
            result["response"] = httpx.post(
                url + "/v1/captions",
                files={"image": ("a.png", image_bytes())},
                data={"max_new_tokens": "4"},
                timeout=60,
            )

        client = threading.Thread(target=caption)
        client.start()
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the request never reached the decoder"
        process.send_signal(signal.SIGTERM)  # while the request is being decoded
        client.join(60)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    response = result["response"]
    assert response.status_code == 200, response.text
    assert response.json()["captions"][0]["image"] == "a.png"
    # uvicorn re-raises the signal after its graceful shutdown: the exit is "terminated by SIGTERM" (or 0)
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Shutting down" in err and "Traceback" not in err
    assert not list(tmp_path.glob("a.png*"))  # the upload was never written to disk under its name
