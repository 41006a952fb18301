"""Shared test fixtures: paths to ../shared, offline hub."""
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
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
