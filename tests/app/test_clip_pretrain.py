"""Contrastive CLIP pretraining writes a CLIP directory that the `clip:DIR` encoder and tokenizer read back."""
import json

import torch

from captionkit.cli import main
from captionkit.clip_pretrain import train_clip_tokenizer
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.models.encoders import load_encoder
from captionkit.models import hf


def test_clip_tokenizer_in_clips_own_format(tmp_path):
    tok = train_clip_tokenizer(["two red circles and a blue square ."] * 20, 50, tmp_path)
    ids = tok("Two red circles .")["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[0] == "<|startoftext|>" and ids[-1] == tok.get_vocab()["<|endoftext|>"]
    assert tok.decode(ids, skip_special_tokens=True).strip() == "two red circles ."


def test_pretrain_cli_writes_a_usable_encoder_and_reuses_it(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "data", images=40, seed=0, size=48)
    out = tmp_path / "clip"
    args = ["clip", "pretrain", "--dataset", str(data), "--out", str(out), "--set", "epochs=2",
            "--set", "image_size=32", "--set", "width=32", "--set", "layers=1", "--set", "projection_dim=16",
            "--set", "batch_size=16", "--set", "warmup_steps=1"]
    assert main(args) == 0
    log = [json.loads(line) for line in (out / "pretrain_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1] and all(0.0 <= r["dev_retrieval_top1"] <= 1.0 for r in log)
    encoder = load_encoder(f"clip:{out}")
    from PIL import Image
    feats = encoder.encode_images([Image.new("RGB", (48, 48), "red"), Image.new("RGB", (48, 48), "blue")])
    assert feats.shape == (2, 16) and torch.isfinite(feats).all()
    _, _, tokenizer = hf.load_clip(str(out))
    assert tokenizer is not None and tokenizer.decode(tokenizer("a red star")["input_ids"],
                                                      skip_special_tokens=True).strip() == "a red star"
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # finished: reused, not retrained
    assert (out / "model.safetensors").stat().st_mtime_ns == before
