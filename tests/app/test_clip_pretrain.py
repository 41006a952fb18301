"""Contrastive CLIP pretraining writes a CLIP directory that the `clip:DIR` encoder and tokenizer read back."""

import json
from dataclasses import replace

import pytest
import torch

from captionkit.cli import main
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.errors import ConfigError
from captionkit.models import hf
from captionkit.models.encoders import load_encoder
from captionkit.training import clip_pretrain
from captionkit.training.clip_pretrain import ClipPretrainConfig, pretrain_clip, train_clip_tokenizer


def test_clip_tokenizer_in_clips_own_format(tmp_path):
    tok = train_clip_tokenizer(["two red circles and a blue square ."] * 20, 50, tmp_path)
    ids = tok("Two red circles .")["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[0] == "<|startoftext|>" and ids[-1] == tok.get_vocab()["<|endoftext|>"]
    assert tok.decode(ids, skip_special_tokens=True).strip() == "two red circles ."


def test_pretrain_cli_writes_a_usable_encoder_and_reuses_it(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "data", images=40, seed=0, size=48)
    out = tmp_path / "clip"
    args = [
        "clip",
        "pretrain",
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--set",
        "epochs=2",
        "--set",
        "image_size=32",
        "--set",
        "width=32",
        "--set",
        "layers=1",
        "--set",
        "projection_dim=16",
        "--set",
        "batch_size=16",
        "--set",
        "warmup_steps=1",
    ]
    assert main(args) == 0
    log = [json.loads(line) for line in (out / "pretrain_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1] and all(0.0 <= r["dev_retrieval_top1"] <= 1.0 for r in log)
    encoder = load_encoder(f"clip:{out}")
    from PIL import Image

    feats = encoder.encode_images([Image.new("RGB", (48, 48), "red"), Image.new("RGB", (48, 48), "blue")])
    assert feats.shape == (2, 16) and torch.isfinite(feats).all()
    _, _, tokenizer = hf.load_clip(str(out))
    assert (
        tokenizer is not None
        and tokenizer.decode(tokenizer("a red star")["input_ids"], skip_special_tokens=True).strip() == "a red star"
    )
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # finished: reused, not retrained
    assert (out / "model.safetensors").stat().st_mtime_ns == before


TINY = ClipPretrainConfig(
    image_size=32,
    width=32,
    layers=1,
    heads=2,
    projection_dim=16,
    batch_size=16,
    warmup_steps=1,
    epochs=3,
    tokenizer_merges=50,
)


def test_interrupted_pretrain_resumes_to_the_same_weights(tmp_path, monkeypatch):
    data = write_synthetic_dataset(tmp_path / "data", images=40, seed=0, size=48)
    straight = pretrain_clip(data, tmp_path / "straight", TINY, progress=False)

    calls = {"n": 0}
    real_retrieval = clip_pretrain.retrieval_top1

    def interrupt_in_second_epoch(*args, **kwargs):  # after epoch 0's resume state is written
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_retrieval(*args, **kwargs)

    monkeypatch.setattr(clip_pretrain, "retrieval_top1", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretrain_clip(data, tmp_path / "resumed", TINY, progress=False)
    assert (tmp_path / "resumed" / clip_pretrain.RESUME_NAME).is_file()
    monkeypatch.setattr(clip_pretrain, "retrieval_top1", real_retrieval)
    resumed = pretrain_clip(data, tmp_path / "resumed", TINY, progress=False)

    a, _, _ = hf.load_clip(str(straight))
    b, _, _ = hf.load_clip(str(resumed))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    log = [json.loads(line) for line in (resumed / "pretrain_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]
    assert not (resumed / clip_pretrain.RESUME_NAME).exists()


def test_reusing_an_out_trained_with_other_settings_is_refused(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", images=30, seed=0, size=48)
    out = pretrain_clip(data, tmp_path / "clip", replace(TINY, epochs=1), progress=False)
    with pytest.raises(ConfigError, match=r"epochs=1, now epochs=2 .*delete"):
        pretrain_clip(data, out, replace(TINY, epochs=2), progress=False)
