"""End-to-end mode: the LSTM captioners own a VGG encoder, read pixels and fine-tune only its top blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lstm_helpers import batch_of

from captionkit.data.formats import load_dataset
from captionkit.data.images import load_image
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.data.text import collate_captions, encode_for_training
from captionkit.decoding import generate
from captionkit.errors import ConfigError
from captionkit.models.base import build_model
from captionkit.models.tokenizers import WordVocab

CAPTIONS = [[5, 6, 7], [8, 9]]


def pixel_model(name: str, blocks: int) -> torch.nn.Module:
    feature, dim = ("fc2", 512) if name == "show-tell-merge" else ("conv5_3", 64)
    return build_model(
        {
            "type": name,
            "vocab_size": 16,
            "feature_dim": dim,
            "embed_dim": 8,
            "hidden_dim": 8,
            "dropout": 0.0,
            "finetune_encoder": f"vgg16-small:{feature}",
            "finetune_blocks": blocks,
        }
    )


@pytest.mark.parametrize("name", ["show-tell-merge", "show-attend-tell"])
def test_gradients_reach_only_the_unfrozen_encoder_blocks(name):
    torch.manual_seed(0)
    model = pixel_model(name, blocks=2).train()
    assert model.input_kind == "pixels"
    input_ids, labels = batch_of(CAPTIONS)
    pixels = torch.randn(2, 3, 32, 32)  # 32 px: the smallest input that survives VGG's five max-pools
    model({"features": pixels, "input_ids": input_ids, "labels": labels}).loss.backward()
    blocks = model.image_encoder.conv_blocks()
    for conv in [c for block in blocks[:3] for c in block]:
        assert conv.weight.grad is None and not conv.weight.requires_grad
    for conv in [c for block in blocks[3:] for c in block]:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    trainable = {id(p) for p in model.trainable_parameters()}
    assert all((id(c.weight) in trainable) == (i >= 3) for i, block in enumerate(blocks) for c in block)
    if name == "show-tell-merge":  # fc2 comes out of the two FC layers, trained with the top blocks
        assert model.image_encoder.classifier[3].weight.grad is not None


def test_a_frozen_encoder_stays_in_eval_mode():
    model = pixel_model("show-tell-merge", blocks=0).train()
    assert model.embedding.training and not model.image_encoder.training
    assert model.trainable_parameters() and all(not p.requires_grad for p in model.image_encoder.parameters())


def test_feature_dim_must_match_the_encoder():
    with pytest.raises(ConfigError, match="feature_dim"):
        build_model(
            {
                "type": "show-attend-tell",
                "vocab_size": 16,
                "feature_dim": 512,
                "finetune_encoder": "vgg16-small:conv5_3",
                "finetune_blocks": 1,
            }
        )


@pytest.mark.parametrize("name", ["show-tell-merge", "show-attend-tell"])
def test_trains_end_to_end_from_pixels_until_the_captions_come_back(name, tmp_path):
    """The CPU demo's path: a small random VGG16 fine-tuned with the decoder memorises four real (synthetic)
    pictures' captions."""
    torch.manual_seed(0)
    records = list(load_dataset(write_synthetic_dataset(tmp_path / "data", images=4, seed=3, size=64)))
    captions = [r.captions[0] for r in records]
    vocab = WordVocab.build(captions)
    feature, dim, extra = (
        ("fc2", 512, {"decoder_dim": 32}) if name == "show-tell-merge" else ("conv5_3", 64, {"attention_dim": 32})
    )
    model = build_model(
        {
            "type": name,
            "vocab_size": vocab.vocab_size,
            "feature_dim": dim,
            "embed_dim": 32,
            "hidden_dim": 32,
            "dropout": 0.0,
            "feature_norm": True,
            "finetune_encoder": f"vgg16-small:{feature}",
            "finetune_blocks": 5,
            **extra,
        }
    )
    pixels = torch.stack([model.image_encoder.preprocess(load_image(r.image_path)) for r in records])
    pixels = F.interpolate(pixels, size=(48, 48), mode="bilinear", antialias=True)  # (4, 3, 48, 48): fast
    input_ids, labels = collate_captions([encode_for_training(vocab, c, 40) for c in captions], vocab.pad_token_id)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    for _ in range(250):
        optimizer.zero_grad()
        model({"features": pixels, "input_ids": input_ids, "labels": labels}).loss.backward()
        optimizer.step()
    decoded = [vocab.decode(ids) for ids in generate(model, pixels, vocab.eos_token_id, max_new_tokens=40)]
    assert decoded == [vocab.decode(vocab.encode(c)) for c in captions]
