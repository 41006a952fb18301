"""ClipCapModel: the forward contract, frozen GPT-2, padding, cached decoding steps, model directories, presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clipcap_helpers import tiny_config

from captionkit.config import from_dict
from captionkit.errors import ConfigError
from captionkit.models import hf
from captionkit.models.base import IGNORE_INDEX, build_model, uncached_logits
from captionkit.models.clipcap import ClipCapConfig, ClipCapModel
from captionkit.models.encoders import load_encoder
from captionkit.models.model_dir import load_model_dir, save_model_dir
from captionkit.registry import get_preset

CAPTIONS = [
    "a red square on a grey background .",
    "two blue stars and a green disc .",
    "there is a single purple triangle .",
    "one orange cross above a small red square .",
]


def _batch(b: int = 3, t: int = 7, d: int = 16, vocab: int = 1024, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (b, t), generator=g)
    lengths = torch.tensor([t, t - 3, 2][:b])
    labels = input_ids.masked_fill(torch.arange(t) >= lengths[:, None], IGNORE_INDEX)
    input_ids = input_ids.masked_fill(labels == IGNORE_INDEX, 0)  # padded with pad_token_id (EOS = 0 here)
    return {"features": torch.randn(b, d, generator=g), "input_ids": input_ids, "labels": labels}


@pytest.fixture(params=["mlp", "transformer"])
def model(request) -> ClipCapModel:
    torch.manual_seed(0)
    return ClipCapModel.build(tiny_config(request.param)).eval()


def test_forward_shapes_and_caption_only_loss(model):
    batch = _batch()
    out = model(batch)
    assert out.logits.shape == (3, 7, 1024)
    assert model.prefix(batch["features"]).shape == (3, 3, 64)  # (B, k, E)
    flat = torch.nn.functional.cross_entropy(
        out.logits.reshape(-1, 1024), batch["labels"].reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert torch.allclose(out.loss, flat)
    assert model.input_kind == "features"
    assert model(dict(batch, labels=None)).loss is None


def test_mapper_module_names_follow_the_original():
    mlp = ClipCapModel.build(tiny_config("mlp"))
    tr = ClipCapModel.build(tiny_config("transformer"))
    assert {"clip_project.model.0.weight", "clip_project.model.2.bias"} <= set(mlp.state_dict())
    assert {
        "clip_project.prefix_const",
        "clip_project.linear.weight",
        "clip_project.transformer.layers.1.attn.to_keys_values.weight",
        "clip_project.transformer.layers.0.mlp.fc2.bias",
    } <= set(tr.state_dict())
    assert mlp.clip_project.model[0].out_features == 3 * 64 // 2  # k*E/2 hidden, as the original


def test_frozen_gpt2_gets_no_gradients_no_optimizer_slot_and_stays_in_eval():
    model = ClipCapModel.build(tiny_config("transformer", freeze_gpt2=True))
    model.train()
    assert not model.gpt.training and model.clip_project.training
    batch = _batch()
    first = model(batch)
    first.loss.backward()
    assert all(p.grad is None for p in model.gpt.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.clip_project.parameters())
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for p in model.clip_project.parameters()}
    # GPT-2 (dropout 0.1 in its config) runs without dropout in train mode: two passes agree exactly
    assert torch.equal(model(batch).logits, first.logits)


def test_fine_tuned_gpt2_trains_with_the_mapper():
    model = ClipCapModel.build(tiny_config("mlp"))
    model.train()
    assert model.gpt.training
    model(_batch()).loss.backward()
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.parameters()}
    assert model.gpt.get_input_embeddings().weight.grad.abs().sum() > 0


def test_padding_changes_neither_loss_nor_real_positions(model):
    batch = _batch()
    pad = batch["labels"] == IGNORE_INDEX
    other = dict(batch, input_ids=batch["input_ids"].masked_fill(pad, 977))
    a, b = model(batch), model(other)
    assert torch.equal(a.loss, b.loss)
    assert torch.allclose(a.logits[~pad], b.logits[~pad], atol=1e-6)
    # each row equals the row run alone without any padding
    for row in range(3):
        n = int((~pad[row]).sum())
        alone = model(
            {"features": batch["features"][row : row + 1], "input_ids": batch["input_ids"][row : row + 1, :n]}
        )
        assert torch.allclose(alone.logits[0], a.logits[row, :n], atol=1e-5)


@torch.no_grad()
def test_cached_start_step_match_the_uncached_forward(model):
    features = torch.randn(3, 16)
    tokens = torch.tensor([[5, 9, 1, 40], [7, 7, 2, 3], [100, 0, 8, 1000]])
    logits, state = model.start(features)
    assert torch.allclose(logits, uncached_logits(model, features, tokens[:, :0]), atol=1e-5)
    for t in range(tokens.size(1)):
        logits, state = model.step(tokens[:, t], state)
        assert torch.allclose(logits, uncached_logits(model, features, tokens[:, : t + 1]), atol=1e-5)
    assert hf.kv_cache_length(state) == 3 + 4  # prefix + 4 tokens


@torch.no_grad()
def test_reorder_state_selects_and_duplicates_rows(model):
    features = torch.randn(3, 16)
    history = torch.tensor([[5, 9], [7, 7], [100, 0]])
    _, state = model.start(features)
    for t in range(2):
        _, state = model.step(history[:, t], state)
    index = torch.tensor([2, 0, 2, 1])
    state = model.reorder_state(state, index)
    nxt = torch.tensor([11, 12, 13, 14])
    logits, _ = model.step(nxt, state)
    expected = uncached_logits(model, features[index], torch.cat([history[index], nxt[:, None]], dim=1))
    assert torch.allclose(logits, expected, atol=1e-5)


def test_model_dir_round_trip_needs_neither_the_hub_nor_the_gpt2_source(tmp_path: Path):
    gpt2_json = tmp_path / "gpt2.json"
    gpt2_json.write_text(json.dumps(hf.resolve_source("captionkit:tiny-gpt2").config), encoding="utf-8")
    config = tiny_config("transformer", gpt2=str(gpt2_json), normalize_prefix=True)
    model = ClipCapModel.build(config).eval()
    tokenizer = ClipCapModel.build_tokenizer(config, CAPTIONS)
    save_model_dir(tmp_path / "model", model, tokenizer, encoder="clip:captionkit:tiny-clip")
    gpt2_json.unlink()  # the directory's config.json holds the GPT-2 architecture itself
    loaded = load_model_dir(tmp_path / "model")
    batch = _batch()
    assert torch.equal(loaded.model(batch).logits, model(batch).logits)
    assert loaded.model.config == model.config and loaded.model.config.gpt2_config["n_layer"] == 2
    assert loaded.encoder == "clip:captionkit:tiny-clip"
    assert loaded.tokenizer.encode(CAPTIONS[1]) == tokenizer.encode(CAPTIONS[1])


def test_trained_bpe_fits_the_tiny_gpt2_and_decodes_to_words():
    config = tiny_config()
    tok = ClipCapModel.build_tokenizer(config, CAPTIONS * 3)
    again = ClipCapModel.build_tokenizer(config, CAPTIONS * 3)
    for caption in CAPTIONS:
        ids = tok.encode(caption)
        assert ids == again.encode(caption)  # deterministic: every process of a run learns the same BPE
        assert max(ids) < tok.vocab_size <= 1024 and tok.eos_token_id not in ids
        assert tok.decode(ids + [tok.eos_token_id]) == caption
    assert tok.pad_token_id == tok.eos_token_id


def test_tokenizer_choices_that_cannot_work_are_refused(tmp_path: Path, gpt2_tokenizer_dir: Path):
    with pytest.raises(ConfigError, match="bare config"):
        ClipCapModel.build_tokenizer(tiny_config(tokenizer=""), CAPTIONS)
    with pytest.raises(ConfigError, match="50257 tokens but GPT-2"):  # real GPT-2 BPE, 1024-token tiny GPT-2
        ClipCapModel.build_tokenizer(tiny_config(tokenizer=str(gpt2_tokenizer_dir)), CAPTIONS)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"mapping='lstm'; valid: mlp, transformer"):
        ClipCapConfig(mapping="lstm")
    with pytest.raises(ConfigError, match="num_heads=6"):
        ClipCapModel.build(tiny_config("transformer", num_heads=6))
    model = ClipCapModel.build(tiny_config())
    with pytest.raises(ConfigError, match="clip_dim is 16"):
        model.prefix(torch.randn(2, 512))


def test_paper_presets_state_the_paper_settings():
    for name, mapping, frozen in [
        ("clipcap-mlp-coco", "mlp", False),
        ("clipcap-transformer-coco", "transformer", True),
    ]:
        preset = get_preset(name)
        data = dict(preset["model"])
        assert data.pop("type") == "clipcap"
        config = from_dict(ClipCapConfig, data)
        assert (config.mapping, config.prefix_length, config.clip_dim, config.gpt2, config.freeze_gpt2) == (
            mapping,
            10,
            512,
            "gpt2",
            frozen,
        )
        assert preset["encoder"] == "clip:openai/clip-vit-base-patch32"
        assert {k: preset["train"][k] for k in ("lr", "warmup_steps", "batch_size", "epochs")} == {
            "lr": 2e-5,
            "warmup_steps": 5000,
            "batch_size": 40,
            "epochs": 10,
        }
    assert get_preset("clipcap-transformer")["model"]["num_layers"] == 8


@pytest.mark.parametrize("name", ["tiny-clipcap-mlp", "tiny-clipcap-transformer"])
def test_tiny_presets_build_offline_and_fit_their_encoder(name):
    preset = get_preset(name)
    model = build_model(preset["model"])
    encoder = load_encoder(preset["encoder"])
    assert encoder.feature_shape == (model.config.clip_dim,)
    tokenizer = ClipCapModel.build_tokenizer(model.config, CAPTIONS)
    ids = torch.tensor([tokenizer.encode(CAPTIONS[0]) + [tokenizer.eos_token_id]])
    out = model({"features": torch.randn(1, model.config.clip_dim), "input_ids": ids, "labels": ids})
    assert out.logits.shape == (1, ids.size(1), hf.gpt2_vocab_size(model.gpt)) and torch.isfinite(out.loss)


def test_normalize_prefix_makes_the_mapper_see_unit_vectors():
    features = torch.randn(2, 16)
    normalized = ClipCapModel.build(tiny_config(normalize_prefix=True)).eval()
    plain = ClipCapModel.build(tiny_config()).eval()
    with torch.no_grad():
        assert torch.allclose(normalized.prefix(features * 7.0), normalized.prefix(features), atol=1e-5)
        assert not torch.allclose(plain.prefix(features * 7.0), plain.prefix(features), atol=1e-3)
