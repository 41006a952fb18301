"""Contrastive CLIP pretraining writes a CLIP directory that the `clip:DIR` encoder and tokenizer read back."""

from dataclasses import replace

import pytest
import torch

from captionkit.cli import main
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.errors import ConfigError
from captionkit.models import hf
from captionkit.models.encoders import load_encoder
from captionkit.training import checkpoint as ckpt
from captionkit.training.clip_pretrain import ClipPretrainConfig, pretrain_clip, train_clip_tokenizer
from captionkit.training.logging import read_log
from captionkit.training.pretrain_run import DONE_MARKER


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
    epochs = [e for e in read_log(out) if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(0.0 <= e["dev_retrieval_top1"] <= 1.0 for e in epochs)
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

    save = ckpt.save_checkpoint

    def save_then_die(*args, **kwargs):  # killed right after the first epoch's checkpoint
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain_clip(data, tmp_path / "resumed", TINY, progress=False)
    assert ckpt.checkpoint_dirs(tmp_path / "resumed") and not (tmp_path / "resumed" / DONE_MARKER).exists()
    assert not list((tmp_path / "resumed").glob("*.pt"))  # the engine's checkpoints, no pickled resume state
    monkeypatch.setattr(ckpt, "save_checkpoint", save)
    resumed = pretrain_clip(data, tmp_path / "resumed", TINY, progress=False)

    a, _, _ = hf.load_clip(str(straight))
    b, _, _ = hf.load_clip(str(resumed))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    events = read_log(resumed)
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3]
    assert [e["event"] for e in events].count("resume") == 1


def test_pretrain_reads_the_dataset_with_its_format_and_options(tmp_path):
    """A CSV whose columns need reader options: before, clip pretrain read every dataset with no options."""
    import csv

    data = write_synthetic_dataset(tmp_path / "data", images=12, seed=0, size=48)
    from captionkit.data.formats import load_dataset

    records = load_dataset(data).records
    table = tmp_path / "table.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["picture", "text", "part"])
        for r in records:
            for caption in r.captions:
                writer.writerow([str(r.image_path), caption, r.split])
    options = {"image_column": "picture", "caption_column": "text", "split_column": "part"}
    out = pretrain_clip(
        table, tmp_path / "clip", replace(TINY, epochs=1), progress=False, dataset_format="csv", dataset_options=options
    )
    assert (out / "model.safetensors").is_file()


def test_pretrain_runs_on_the_engines_device(tmp_path, monkeypatch):
    """The model is placed where the engine's accelerator puts it (before, clip pretrain never moved it)."""
    from captionkit.training import engine

    seen = []
    real = engine.Engine._loop

    def spy(self, state, model, *args):
        seen.append((self.accelerator.device.type, next(model.parameters()).device.type))
        return real(self, state, model, *args)

    monkeypatch.setattr(engine.Engine, "_loop", spy)
    data = write_synthetic_dataset(tmp_path / "data", images=12, seed=0, size=48)
    pretrain_clip(data, tmp_path / "clip", replace(TINY, epochs=1), progress=False)
    assert seen and seen[0][0] == seen[0][1]


def test_reusing_an_out_trained_with_other_settings_is_refused(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", images=30, seed=0, size=48)
    out = pretrain_clip(data, tmp_path / "clip", replace(TINY, epochs=1), progress=False)
    with pytest.raises(ConfigError, match=r"epochs=1, now epochs=2 .*delete"):
        pretrain_clip(data, out, replace(TINY, epochs=2), progress=False)
