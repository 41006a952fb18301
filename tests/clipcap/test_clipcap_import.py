"""Original ClipCap checkpoints: conversion, parity with the original code's outputs, refusals, the CLI."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from clipcap_helpers import reference_config

from captionkit.cli import main
from captionkit.errors import CheckpointError
from captionkit.models.base import IGNORE_INDEX
from captionkit.models.clipcap_import import convert_clipcap_checkpoint
from captionkit.models.hf import GPT2BPETokenizer
from captionkit.models.model_dir import load_model_dir, save_model_dir

VARIANTS = {"mlp": "ref_outputs_mlp_tiny.pt", "transformer_ir02": "ref_outputs_transformer_ir02_tiny.pt"}
K = 10  # prefix length of both fixture models


@pytest.fixture(params=sorted(VARIANTS))
def imported(request, clipcap_reference, reference_variants, gpt2_tokenizer_dir, tmp_path):
    """A fixture model converted, saved as a model directory and loaded back, with the original's outputs."""
    spec = reference_variants[request.param]
    model = convert_clipcap_checkpoint(
        clipcap_reference / spec["state_dict_file"], reference_config(clipcap_reference, spec)
    )
    save_model_dir(tmp_path / "model", model, GPT2BPETokenizer.from_pretrained(str(gpt2_tokenizer_dir)), None)
    reference = torch.load(clipcap_reference / VARIANTS[request.param], weights_only=True)
    return load_model_dir(tmp_path / "model").model, reference, spec


def _with_extra_position(ids: torch.Tensor) -> torch.Tensor:
    """One more input column: our logits[:, t] score token t, so T+1 inputs also give the original's last position."""
    return torch.cat([ids, torch.zeros(ids.size(0), 1, dtype=torch.long)], dim=1)


@torch.no_grad()
def test_mapper_logits_and_loss_match_the_original(imported, reference_inputs):
    model, ref, _ = imported
    prefixes, tokens, padded = (
        reference_inputs["prefixes"],
        reference_inputs["tokens"],
        reference_inputs["tokens_padded"],
    )
    assert torch.allclose(model.prefix(prefixes), ref["prefix_projections"], atol=1e-4)

    logits = model({"features": prefixes, "input_ids": _with_extra_position(tokens)}).logits
    assert torch.allclose(logits, ref["logits"][:, K - 1 :], atol=1e-4)  # every position after the prefix

    text_mask = torch.cat([reference_inputs["mask"][:, K:], torch.zeros(4, 1)], dim=1)
    masked = model(
        {"features": prefixes, "input_ids": _with_extra_position(padded), "attention_mask": text_mask}
    ).logits
    assert torch.allclose(masked, ref["logits_masked"][:, K - 1 :], atol=1e-4)

    # their loss (ignore_index=0) from our logits, and ours (padding -100) on the same captions
    theirs = F.cross_entropy(masked[:, :-1].reshape(-1, masked.size(-1)), padded.reshape(-1), ignore_index=0)
    assert abs(theirs.item() - ref["loss"].item()) < 1e-5
    assert not (tokens == 0).any()  # so ignoring id 0 and ignoring padding select the same positions here
    lengths = reference_inputs["lengths"]
    labels = padded.masked_fill(torch.arange(padded.size(1)) >= lengths[:, None], IGNORE_INDEX)
    ours = model({"features": prefixes, "input_ids": padded, "labels": labels}).loss
    assert abs(ours.item() - ref["loss"].item()) < 1e-5


@torch.no_grad()
def test_cached_greedy_reproduces_the_original_ids(imported, reference_inputs):
    model, _, spec = imported
    logits, state = model.start(reference_inputs["prefixes"])
    ids = []
    for _ in range(20):
        ids.append(logits.argmax(-1))
        logits, state = model.step(ids[-1], state)
    assert torch.stack(ids, dim=1).tolist() == spec["greedy_nostop"]


def _import_args(root: Path, spec: dict, out: Path, *extra: str) -> list[str]:
    c = spec["constructor"]
    args = [
        "import",
        "clipcap",
        str(root / spec["state_dict_file"]),
        "--mapping",
        c["mapping"],
        "--prefix-length",
        str(c["prefix_length"]),
        "--num-layers",
        str(c["num_layers"]),
        "--prefix-dim",
        str(c["prefix_size"]),
        "--gpt2",
        str(root / spec["gpt2_config_file"]),
        "--out",
        str(out),
    ]
    if c["clip_length"]:
        args += ["--clip-length", str(c["clip_length"])]
    return args + list(extra)


def test_cli_import_writes_a_loadable_model_dir(
    clipcap_reference, reference_variants, reference_inputs, gpt2_tokenizer_dir, tmp_path, capsys
):
    spec = reference_variants["transformer_ir02"]
    out = tmp_path / "imported"
    code = main(
        _import_args(
            clipcap_reference,
            spec,
            out,
            "--tokenizer",
            str(gpt2_tokenizer_dir),
            "--clip",
            "openai/clip-vit-base-patch32",
        )
    )
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["encoder"] == "clip:openai/clip-vit-base-patch32"
    assert config["model"]["mapping"] == "transformer" and config["model"]["gpt2_config"]["n_embd"] == 64
    loaded = load_model_dir(out)
    assert loaded.tokenizer.eos_token_id == 50256
    ref = torch.load(clipcap_reference / spec["outputs_file"], weights_only=True)
    with torch.no_grad():
        logits = loaded.model(
            {"features": reference_inputs["prefixes"], "input_ids": reference_inputs["tokens"]}
        ).logits
    assert torch.allclose(logits, ref["logits"][:, K - 1 : -1], atol=1e-4)


def test_cli_refuses_a_mismatched_architecture_naming_key_and_shapes(
    clipcap_reference, reference_variants, gpt2_tokenizer_dir, tmp_path, capsys
):
    spec = reference_variants["mlp"]
    args = _import_args(clipcap_reference, spec, tmp_path / "out", "--tokenizer", str(gpt2_tokenizer_dir))
    args[args.index("--prefix-dim") + 1] = "640"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "clip_project.model.0.weight" in err and "(320, 512)" in err and "(320, 640)" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_wrong_mapper_depth_or_type_is_refused(clipcap_reference, reference_variants):
    spec = reference_variants["transformer_ir02"]
    config = reference_config(clipcap_reference, spec)
    path = clipcap_reference / spec["state_dict_file"]
    with pytest.raises(CheckpointError, match=r"layers\.2\.norm1\.weight.*missing"):
        convert_clipcap_checkpoint(path, replace(config, num_layers=3))
    with pytest.raises(CheckpointError, match=r"clip_project\.model\.0\.weight.*missing"):
        convert_clipcap_checkpoint(path, replace(config, mapping="mlp"))
    with pytest.raises(CheckpointError, match=r"layers\.1\.norm1\.weight.*not in the stated architecture"):
        convert_clipcap_checkpoint(path, replace(config, num_layers=1))


@torch.no_grad()
def test_legacy_attention_buffers_are_skipped(clipcap_reference, reference_variants, reference_inputs, tmp_path):
    spec = reference_variants["mlp"]
    state = torch.load(clipcap_reference / spec["state_dict_file"], weights_only=True)
    for layer in range(2):  # what checkpoints saved with 2021 transformers hold
        state[f"gpt.transformer.h.{layer}.attn.bias"] = torch.tril(torch.ones(128, 128)).view(1, 1, 128, 128)
        state[f"gpt.transformer.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, tmp_path / "legacy.pt")
    config = reference_config(clipcap_reference, spec)
    legacy = convert_clipcap_checkpoint(tmp_path / "legacy.pt", config)
    plain = convert_clipcap_checkpoint(clipcap_reference / spec["state_dict_file"], config)
    batch = {"features": reference_inputs["prefixes"], "input_ids": reference_inputs["tokens"]}
    assert torch.equal(legacy(batch).logits, plain(batch).logits)


def test_a_checkpoint_with_code_in_it_is_not_unpickled(clipcap_reference, reference_variants, tmp_path):
    torch.save({"gpt.lm_head.weight": torch.zeros(1), "args": argparse.Namespace(lr=1)}, tmp_path / "pickled.pt")
    config = reference_config(clipcap_reference, reference_variants["mlp"])
    with pytest.raises(CheckpointError, match="plain PyTorch state_dict"):
        convert_clipcap_checkpoint(tmp_path / "pickled.pt", config)
    with pytest.raises(CheckpointError, match="not found"):
        convert_clipcap_checkpoint(tmp_path / "missing.pt", config)


def test_cli_needs_a_tokenizer_when_gpt2_is_a_bare_config(clipcap_reference, reference_variants, tmp_path, capsys):
    assert main(_import_args(clipcap_reference, reference_variants["mlp"], tmp_path / "out")) == 2
    assert "--tokenizer" in capsys.readouterr().err
