"""Shared test fixtures: paths to ../shared, offline hub, a tiny ClipCap model directory, a tiny saved CLIP."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from captionkit.models.base import build_model
from captionkit.models.model_dir import save_model_dir
from captionkit.registry import get_model_class, get_preset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# Debian's Chromium for the browser tests (the report, the server's page); never a browser playwright downloads
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not beside the repository")
    return SHARED


@pytest.fixture(scope="session")
def flickr8k_fixture(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "flickr8k"


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(shared_dir: Path) -> Path:
    return shared_dir / "tokenizers" / "gpt2"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every model in the tests is tiny: a second OpenMP thread gains nothing, and on a busy 2-core machine two
    threads that wait on each other made tiny training loops up to 50x slower (4 s -> 190 s for 250 Adam steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random ClipCap model directory (tiny CLIP encoder, BPE learnt from a few captions): CLI and server
    tests."""
    preset = get_preset("tiny-clipcap-mlp")
    torch.manual_seed(0)  # the same random weights (and captions) in every run
    model = build_model(preset["model"])
    captions = ["a red circle .", "two blue squares on a grey background .", "a green star ."] * 10
    tokenizer = get_model_class("clipcap").build_tokenizer(model.config, captions)
    return save_model_dir(tmp_path_factory.mktemp("model") / "model", model, tokenizer, preset["encoder"])


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory, shared_dir: Path) -> Path:
    """The tiny random CLIP of the tiny presets, saved like a hub checkpoint with the real CLIP BPE tokenizer
    (text tower and tokenizer included: what CLIP reranking and CLIPScore need). Reranking tests."""
    from captionkit.models import hf

    model, processor, _ = hf.load_clip("captionkit:tiny-clip")
    tokenizer = hf.clip_tokenizer(str(shared_dir / "tokenizers" / "clip"))
    return hf.save_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", model, processor, tokenizer)


@pytest.fixture()
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium): the browser test cannot run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
