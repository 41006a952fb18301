"""The transformers seam: GPT-2 and CLIP from directories (the hub-id code path), configs, tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clipcap_helpers import tiny_config
from PIL import Image

from captionkit.data.text import encode_for_training
from captionkit.errors import ConfigError, UnknownNameError
from captionkit.models import hf
from captionkit.models.clipcap import ClipCapModel
from captionkit.models.encoders import load_encoder
from captionkit.registry import get_tokenizer_class


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_gpt2_directory_loads_through_from_pretrained(tmp_path: Path):
    saved = hf.load_gpt2("captionkit:tiny-gpt2")
    with torch.no_grad():  # weights that differ from any seeded init
        saved.get_input_embeddings().weight.add_(1.0)
    saved.save_pretrained(str(tmp_path / "gpt2"))
    assert not hf.resolve_source(str(tmp_path / "gpt2")).is_config  # the branch a hub id takes

    assert _same_weights(hf.load_gpt2(str(tmp_path / "gpt2")), saved)
    model = ClipCapModel.build(tiny_config(gpt2=str(tmp_path / "gpt2")))  # pretrained=True: the weights
    assert _same_weights(model.gpt, saved)
    assert model.config.gpt2_config["n_embd"] == 64
    fresh = ClipCapModel.build(tiny_config(gpt2=str(tmp_path / "gpt2")), pretrained=False)  # architecture only
    assert not torch.equal(fresh.gpt.get_input_embeddings().weight, saved.get_input_embeddings().weight)


def test_a_hub_id_goes_to_the_hub_and_fails_readably_offline():
    with pytest.raises(ConfigError, match="captionkit-tests/no-such-gpt2"):
        hf.load_gpt2("captionkit-tests/no-such-gpt2")


def test_config_sources_are_seeded_and_leave_the_callers_rng_alone(tmp_path: Path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"n_layer": 1, "n_head": 2, "n_embd": 32, "vocab_size": 300, "n_positions": 32}))
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = hf.load_gpt2(str(path)), hf.load_gpt2(str(path))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert _same_weights(a, b) and hf.gpt2_embedding_size(a) == 32 and hf.gpt2_vocab_size(a) == 300
    with pytest.raises(UnknownNameError, match="captionkit:tiny-gpt2"):
        hf.load_gpt2("captionkit:no-such-config")
    with pytest.raises(ConfigError, match="config file not found"):
        hf.load_gpt2(str(tmp_path / "missing.json"))


def test_real_gpt2_tokenizer_on_flickr8k_captions(gpt2_tokenizer_dir: Path, flickr_captions: list[str], tmp_path):
    tok = get_tokenizer_class("gpt2").from_pretrained(str(gpt2_tokenizer_dir))
    assert (tok.eos_token_id, tok.pad_token_id, tok.vocab_size) == (50256, 50256, 50257)
    assert tok.encode("A dog runs on the grass .") == [32, 3290, 4539, 319, 262, 8701, 764]
    ending = [c for c in flickr_captions if c.endswith(" .")]
    assert len(ending) > 100
    for caption in ending:
        ids = encode_for_training(tok, caption, max_length=64)
        assert ids[-2:] == [764, 50256]  # " ." is an ordinary token, EOS comes after it
        assert tok.decode(ids) == caption
    tok.save_pretrained(str(tmp_path / "tok"))
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["merges.txt", "vocab.json"]
    again = type(tok).from_pretrained(str(tmp_path / "tok"))
    assert all(again.encode(c) == tok.encode(c) for c in flickr_captions[:50])


def test_clip_tokenizer_from_the_real_bpe_files(shared_dir: Path):
    tok = hf.clip_tokenizer(str(shared_dir / "tokenizers" / "clip"))
    assert tok("a dog runs .").input_ids == [49406, 320, 1929, 5586, 269, 49407]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, shared_dir: Path) -> Path:
    """A tiny CLIP saved with save_pretrained (model + image processor + tokenizer), as a pretrained one is."""
    config = hf.resolve_source("captionkit:tiny-clip").config
    model = hf.new_clip_model(config)
    with torch.no_grad():
        model.visual_projection.weight.mul_(3.0)  # not the seeded init: the weights must come from the files
    out = tmp_path_factory.mktemp("clip")
    hf.save_clip(
        out, model, hf.new_clip_image_processor(64), hf.clip_tokenizer(str(shared_dir / "tokenizers" / "clip"))
    )
    return out


def test_a_saved_clip_loads_straight_and_equals_from_pretrained(clip_dir: Path, tmp_path: Path):
    """load_clip's fast path (uninitialised build + the safetensors copied in) must give exactly the model that
    transformers' from_pretrained gives; fp16 files come back as fp32; other layouts go to from_pretrained."""
    from transformers import CLIPModel

    fast = hf._load_saved_clip(clip_dir)
    assert fast is not None and _same_weights(fast, CLIPModel.from_pretrained(str(clip_dir)))
    half = tmp_path / "half"
    CLIPModel.from_pretrained(str(clip_dir)).half().save_pretrained(str(half))
    assert {p.dtype for p in hf._load_saved_clip(half).parameters()} == {torch.float32}
    (half / "model.safetensors").rename(half / "other.safetensors")
    assert hf._load_saved_clip(half) is None
    model, _, _ = hf.load_clip(str(clip_dir))
    assert _same_weights(model, fast)


def test_clip_encoder_from_a_directory_gives_projected_embeddings(clip_dir: Path, flickr8k_fixture: Path):
    images = [Image.open(p) for p in sorted((flickr8k_fixture / "Images").glob("*.jpg"))[:3]]
    encoder = load_encoder(f"clip:{clip_dir}")
    assert encoder.spec == f"clip:{clip_dir}" and encoder.feature_shape == (64,)
    pixels = encoder.preprocess(images[0])
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.float32
    features = encoder.encode_images(images)
    assert features.shape == (3, 64)
    model, processor, tokenizer = hf.load_clip(str(clip_dir))
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        assert torch.allclose(features, hf.clip_image_embeds(model, pixel_values), atol=1e-5)
        text = tokenizer(["a dog", "two people on a bench"], padding=True, return_tensors="pt")
        assert hf.clip_text_embeds(model, text["input_ids"], text["attention_mask"]).shape == (2, 64)
    assert encoder.describe()["preprocessing"]["crop_size"] == {"height": 64, "width": 64}
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training


def test_packaged_tiny_clip_is_deterministic_and_has_no_tokenizer(flickr8k_fixture: Path):
    image = Image.open(sorted((flickr8k_fixture / "Images").glob("*.jpg"))[0])
    a, b = load_encoder("clip:captionkit:tiny-clip"), load_encoder("clip:captionkit:tiny-clip")
    assert torch.equal(a.encode_images([image]), b.encode_images([image]))
    assert hf.load_clip("captionkit:tiny-clip")[2] is None


def test_contrastive_loss_trains_a_new_clip(shared_dir: Path):
    model = hf.new_clip_model(hf.resolve_source("captionkit:tiny-clip").config).train()
    tok = hf.clip_tokenizer(str(shared_dir / "tokenizers" / "clip"))
    text = tok(["a red square", "a blue star"], padding=True, return_tensors="pt")
    loss = hf.clip_contrastive_loss(model, torch.randn(2, 3, 64, 64), text["input_ids"], text["attention_mask"])
    loss.backward()
    assert loss.ndim == 0 and model.visual_projection.weight.grad is not None
