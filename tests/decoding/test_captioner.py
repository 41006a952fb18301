"""The Python API: captionkit.load(model_dir) -> Captioner.caption / encode / generate / decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from decoding_toys import ToyConfig, ToyGRUCaptioner
from PIL import Image
from torch import Tensor, nn

import captionkit
from captionkit.decoding import DecodingConfig, generate
from captionkit.errors import ConfigError, ImageLoadError
from captionkit.inference.captioner import Captioner
from captionkit.models.base import build_model
from captionkit.models.model_dir import save_model_dir
from captionkit.models.tokenizers import WordVocab
from captionkit.registry import get_preset

CAPTIONS = ["A dog runs on the grass .", "Two people walk in the snow .", "A child jumps into a pool ."] * 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ClipCap (random weights) with the tiny CLIP encoder, saved as a normal model directory."""
    preset = get_preset("tiny-clipcap-mlp")
    model = build_model(preset["model"])
    tokenizer = type(model).build_tokenizer(model.config, CAPTIONS)
    return save_model_dir(tmp_path_factory.mktemp("captioner") / "model", model, tokenizer, preset["encoder"])


@pytest.fixture(scope="module")
def captioner(model_dir: Path) -> Captioner:
    return captionkit.load(str(model_dir))


@pytest.fixture(scope="module")
def image_paths(flickr8k_fixture: Path) -> list[Path]:
    return sorted((flickr8k_fixture / "Images").glob("*.jpg"))[:3]


def test_load_gives_a_captioner_on_the_default_device(captioner, model_dir):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert captioner.device.type == expected
    assert next(captioner.model.parameters()).device.type == expected
    assert captioner.config["model_type"] == "clipcap"
    assert not captioner.model.training


def test_caption_is_encode_then_generate_then_decode(captioner, image_paths):
    captions = captioner.caption(image_paths, max_new_tokens=6)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)  # random weights: may be empty
    features = captioner.encode(image_paths)
    assert features.shape == (3, *captioner.encoder.feature_shape)
    assert captions == captioner.decode(captioner.generate(features, max_new_tokens=6))


def test_paths_pil_images_and_batch_sizes_give_the_same_captions(captioner, image_paths):
    by_path = captioner.caption(image_paths, max_new_tokens=6)
    assert captioner.caption([Image.open(p) for p in image_paths], max_new_tokens=6) == by_path
    grey = [Image.open(p).convert("L") for p in image_paths]  # used as RGB, as load_image would
    assert captioner.caption(grey, max_new_tokens=6) == captioner.caption(
        [g.convert("RGB") for g in grey], max_new_tokens=6
    )
    assert captioner.caption(image_paths, batch_size=2, progress=True, max_new_tokens=6) == by_path
    assert captioner.caption(image_paths[0], max_new_tokens=6) == by_path[:1]


def test_generate_uses_the_tokenizers_eos_and_decoding_options(captioner):
    features = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    eos = captioner.tokenizer.eos_token_id
    assert captioner.generate(features) == generate(captioner.model, features, eos, DecodingConfig())
    beam = captioner.generate(features, num_beams=3, max_new_tokens=5, length_penalty=0.5)
    assert beam == generate(captioner.model, features, eos, num_beams=3, max_new_tokens=5, length_penalty=0.5)
    fixed = captioner.generate(features, max_new_tokens=7, eos_token_id=-1)
    assert [len(ids) for ids in fixed] == [7] * 4


def test_load_options_become_decoding_defaults(model_dir, captioner):
    features = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    tuned = captionkit.load(str(model_dir), device="cpu", num_beams=3, max_new_tokens=5)
    assert tuned.decoding.num_beams == 3
    assert tuned.generate(features) == captioner.generate(features, num_beams=3, max_new_tokens=5)
    assert tuned.generate(features, num_beams=1) == captioner.generate(features, max_new_tokens=5)
    with pytest.raises(ConfigError, match="unknown option.*beams"):
        captionkit.load(str(model_dir), beams=3)


def test_bad_options_fail_before_images_are_loaded(captioner, tmp_path):
    with pytest.raises(ConfigError, match="unknown option"):
        captioner.caption([tmp_path / "missing.jpg"], num_beam=2)
    with pytest.raises(ImageLoadError, match="missing.jpg"):
        captioner.caption([tmp_path / "missing.jpg"])


def test_encoder_is_only_built_when_images_are_captioned(model_dir, image_paths):
    unreachable = captionkit.load(str(model_dir), encoder="clip:/nonexistent/clip-dir")
    assert len(unreachable.generate(torch.zeros(1, 64), max_new_tokens=3)[0]) <= 3
    with pytest.raises(ConfigError, match="/nonexistent/clip-dir"):
        unreachable.caption(image_paths[:1])


class _PixelEncoder(nn.Module):
    """A model-owned encoder: preprocess -> (3, 8, 8) pixels; forward -> (B, 4) features."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def preprocess(self, image: Image.Image) -> Tensor:
        return torch.from_numpy(np.asarray(image.resize((8, 8)), dtype=np.float32) / 255.0).permute(2, 0, 1)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.proj(pixels.mean(dim=(2, 3)))


class _PixelGRU(ToyGRUCaptioner):
    """input_kind "pixels": batch["features"] are pixels, which the model encodes itself."""

    model_type = "test-pixel-gru"
    input_kind = "pixels"

    def __init__(self, vocab_size: int) -> None:
        torch.manual_seed(0)
        super().__init__(ToyConfig(feature_dim=4, vocab_size=vocab_size, dim=4))
        self.image_encoder = _PixelEncoder()
        self.init = nn.Sequential(self.image_encoder, nn.Linear(4, 4))  # pixels -> (B, 4) -> initial GRU state


def test_a_model_that_owns_its_encoder_is_fed_pixels(image_paths):
    vocab = WordVocab.build(CAPTIONS)
    model = _PixelGRU(vocab.vocab_size)
    captioner = Captioner(model, vocab, encoder=None, device="cpu")
    pixels = captioner.encode(image_paths)
    assert pixels.shape == (3, 3, 8, 8)
    assert captioner.encoder is model.image_encoder
    captions = captioner.caption(image_paths, max_new_tokens=4, num_beams=2)
    assert captions == captioner.decode(generate(model, pixels, vocab.eos_token_id, max_new_tokens=4, num_beams=2))
    assert all(len(c.split()) <= 4 for c in captions)


def test_a_directory_without_an_encoder_says_what_to_do(image_paths):
    vocab = WordVocab.build(CAPTIONS)
    features_model = _PixelGRU(vocab.vocab_size)
    features_model.input_kind = "features"
    with pytest.raises(ConfigError, match="names no image encoder"):
        Captioner(features_model, vocab, encoder=None, device="cpu").caption(image_paths[:1])


def test_captions_read_alike_whatever_the_tokenizer(captioner):
    """Issue 16: ClipCap captions ended in " ." with " , " inside, the LSTM's (word vocabulary) had no final period.
    Both now come out detokenised, ending in one period; the tokenizer's own text stays available."""
    gpt2_ids = [captioner.tokenizer.encode(" a dog , running on the grass .")]
    assert captioner.decode(gpt2_ids) == ["a dog, running on the grass."]
    assert captioner.decode(gpt2_ids, tidy=False) == ["a dog , running on the grass ."]
    vocab = WordVocab.build(["a dog running on the grass ."])
    lstm_like = Captioner.__new__(Captioner)
    lstm_like.tokenizer = vocab
    assert lstm_like.decode([vocab.encode("a dog running on the grass")]) == ["a dog running on the grass."]
