"""Issue 16: an unreachable hub fails at once with what to do; images over the pixel limit name `max_pixels`,
which caption, evaluate and the Python API accept, and PIL's raw warning never reaches the user."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

import captionkit
from captionkit.cli import main
from captionkit.errors import ConfigError, ImageTooLargeError
from captionkit.models import hf


@pytest.fixture
def hub_unreachable(monkeypatch):
    """The hub endpoint is a closed port on 127.0.0.1 and offline mode is off, as on a machine without network."""
    from huggingface_hub import constants

    with socket.socket() as s:  # a port nobody listens on once this socket closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hf._hub_unreachable.cache_clear()
    yield
    hf._hub_unreachable.cache_clear()


def test_an_unreachable_hub_fails_at_once_with_what_to_do(hub_unreachable, monkeypatch):
    from transformers import GPT2LMHeadModel

    calls = []
    real = GPT2LMHeadModel.from_pretrained.__func__

    def spy(cls, source, **kwargs):
        calls.append(kwargs)
        return real(cls, source, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "from_pretrained", classmethod(spy))
    with pytest.raises(ConfigError) as info:
        hf.load_gpt2("captionkit-test/not-a-cached-model")
    message = str(info.value)
    assert "cannot be reached" in message and "HF_HUB_OFFLINE=1" in message and "local directory" in message
    assert calls == [{"local_files_only": True}]  # the cache was tried; the network never was


def test_a_local_directory_never_probes_the_hub(hub_unreachable, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=30, n_positions=16))
    hf.save_gpt2(tmp_path / "gpt2", model)
    assert hf.load_gpt2(str(tmp_path / "gpt2")).config.n_embd == 16
    assert hf._hub_unreachable.cache_info().currsize == 0


@pytest.fixture
def big_image(tmp_path) -> Path:
    path = tmp_path / "big.png"
    Image.new("RGB", (1500, 1000), (200, 30, 30)).save(path)  # 1.5 million pixels
    return path


def test_max_pixels_is_an_option_of_the_python_api(clipcap_dir, big_image):
    strict = captionkit.load(str(clipcap_dir), device="cpu", max_pixels=1_000_000)
    with pytest.raises(ImageTooLargeError, match="raise max_pixels"):
        strict.caption(big_image)
    assert len(captionkit.load(str(clipcap_dir), device="cpu", max_pixels=2_000_000).caption(big_image)) == 1
    with pytest.raises(ConfigError, match="max_pixels"):
        captionkit.load(str(clipcap_dir), device="cpu", max_pixels=0)


def test_caption_cli_takes_max_pixels(clipcap_dir, big_image, capsys):
    assert main(["caption", str(clipcap_dir), str(big_image), "--max-pixels", "1000000"]) == 1
    assert "over the limit of 1000000" in capsys.readouterr().err
    assert main(["caption", str(clipcap_dir), str(big_image), "--max-pixels", "2000000", "--dtype", "bfloat16"]) == 0


def test_caption_cli_refuses_an_unsupported_dtype_in_one_line(clipcap_dir, big_image, capsys):
    assert main(["caption", str(clipcap_dir), str(big_image), "--dtype", "float16", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "float16 needs a GPU" in err[0]


def test_no_raw_decompression_bomb_warning_reaches_the_user(tmp_path):
    """In a fresh interpreter (default warning filters): an image over PIL's limit is refused by captionkit's own
    error, or loaded when max_pixels allows it, and stderr stays clean."""
    script = textwrap.dedent(
        f"""
        from PIL import Image
        from captionkit.data.images import load_image
        from captionkit.errors import ImageTooLargeError
        Image.MAX_IMAGE_PIXELS = 1_000_000  # PIL warns above this, as it does above ~89M by default
        Image.new("RGB", (1200, 1000)).save({str(tmp_path / "big.png")!r})
        try:
            load_image({str(tmp_path / "big.png")!r})
        except ImageTooLargeError as exc:
            print("refused:", exc)
        print("loaded", load_image({str(tmp_path / "big.png")!r}, max_pixels=1_500_000).size)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "raise max_pixels" in done.stdout and "loaded (1200, 1000)" in done.stdout
    assert "DecompressionBombWarning" not in done.stderr and done.stderr.strip() == ""


def test_evaluate_passes_the_precision_to_the_model(clipcap_dir, tmp_path, capsys):
    from captionkit.data.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", images=4, seed=0, size=64)
    args = ["evaluate", str(clipcap_dir), "--dataset", str(data), "--split", "all", "--out", str(tmp_path / "ev")]
    assert main([*args, "--dtype", "float16", "--device", "cpu"]) == 2  # refused when the model loads
    assert "float16 needs a GPU" in capsys.readouterr().err


def test_serve_settings_check_the_precision():
    from captionkit.serve.settings import ServeSettings

    with pytest.raises(ConfigError, match="serve settings: quantize int8 takes float32"):
        ServeSettings(dtype="bfloat16", quantize="int8", device="cpu")
    assert ServeSettings(quantize="int8", device="cpu").precision_options == {"quantize": "int8"}
