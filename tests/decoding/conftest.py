"""Fixtures of tests/decoding: the toy models of decoding_toys.py."""

import pytest
from decoding_toys import TOY_SEEDS, make_toy

from captionkit.models.base import CaptionModel


@pytest.fixture(params=sorted(TOY_SEEDS))
def toy_model(request: pytest.FixtureRequest) -> CaptionModel:
    return make_toy(request.param, TOY_SEEDS[request.param])
