"""A tiny random ClipCap model directory (tiny CLIP encoder, BPE learnt from a few captions) for CLI tests."""
import pytest

from captionkit.models.base import build_model
from captionkit.models.model_dir import save_model_dir
from captionkit.registry import get_model_class, get_preset


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    preset = get_preset("tiny-clipcap-mlp")
    model = build_model(preset["model"])
    captions = ["a red circle .", "two blue squares on a grey background .", "a green star ."] * 10
    tokenizer = get_model_class("clipcap").build_tokenizer(model.config, captions)
    return save_model_dir(tmp_path_factory.mktemp("model") / "model", model, tokenizer, preset["encoder"])
