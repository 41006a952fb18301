"""Fixtures for tests/lstm: one intra-op thread while these tiny models run."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny LSTM ops gain nothing from a second thread, and on a busy 2-core machine two OpenMP threads that
    wait on each other ran the overfit test 50x slower (measured: 4 s -> 190 s for 250 Adam steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
