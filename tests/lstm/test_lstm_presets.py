"""The LSTM presets: valid run configs whose models build once the word vocabulary fills in vocab_size."""

from __future__ import annotations

import pytest

from captionkit.models.base import build_model_and_tokenizer
from captionkit.models.encoders import parse_spec
from captionkit.registry import get_model_class, get_preset
from captionkit.training.config import load_run_config

CAPTIONS = ["a red circle .", "two blue squares on a white background ."]
PRESETS = {
    "show-tell-merge": "features",
    "show-attend-tell": "features",
    "tiny-show-tell-merge": "pixels",
    "tiny-show-attend-tell": "pixels",
}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds_with_the_vocabulary_of_the_training_captions(name):
    config = load_run_config(preset=name, dataset="unused", out="unused")
    assert get_preset(name)["model"]["vocab_size"] == 0  # filled from the tokenizer by config_for_tokenizer
    model, tokenizer = build_model_and_tokenizer(config.model, CAPTIONS)
    assert model.input_kind == PRESETS[name]
    if model.input_kind == "pixels":
        assert model.config.finetune_encoder == config.encoder  # the engine preprocesses for the model's encoder
        assert model.image_encoder.feature_shape[-1] == model.config.feature_dim
    # Flickr8k presets keep words seen 5 times (none here), tiny ones every word: 9 distinct words
    assert model.config.vocab_size == tokenizer.vocab_size == 4 + (9 if name.startswith("tiny-") else 0)
    assert type(model) is get_model_class(config.model["type"])
    assert parse_spec(config.encoder).kind in ("vgg16", "vgg16-small")
