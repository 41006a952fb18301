"""Fixtures of tests/decoding: the toy models of decoding_toys.py, run on one torch thread."""
import pytest
import torch

from decoding_toys import TOY_SEEDS, make_toy
from captionkit.models.base import CaptionModel


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second OpenMP thread, and on a busy 2-core machine two spinning threads
    make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=sorted(TOY_SEEDS))
def toy_model(request: pytest.FixtureRequest) -> CaptionModel:
    return make_toy(request.param, TOY_SEEDS[request.param])
