"""The training loop: learning, frozen parts, gradient accumulation, early stopping, pixels models, run layout."""

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_toy import toy_config, write_toy_dataset

from captionkit.config import from_dict, to_dict
from captionkit.data.features import FeatureCache
from captionkit.errors import CheckpointError
from captionkit.models.model_dir import load_model_dir
from captionkit.training import RunConfig, train
from captionkit.training.config import TrainConfig
from captionkit.training.data import EpochSampler
from captionkit.training.engine import make_scheduler
from captionkit.training.logging import read_log


def run(dataset: Path, out: Path, **train_settings) -> Path:
    return train(from_dict(RunConfig, toy_config(dataset, out, **train_settings)))


def events(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in read_log(run_dir) if e["event"] == kind]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    newest = max((run_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    return load_file(newest / "model.safetensors")


def test_overfit_writes_the_run_directory(toy_dataset, tmp_path):
    out = tmp_path / "run"
    config = from_dict(RunConfig, toy_config(toy_dataset, out, epochs=6, lr=0.1, keep_last_n=2))
    model_dir = train(config)

    steps = events(out, "step")
    assert [e["step"] for e in steps] == list(range(1, 25))
    assert steps[-1]["train_loss"] < 0.5 * steps[0]["train_loss"]
    epochs = events(out, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6]
    assert epochs[-1]["dev_loss"] < epochs[0]["dev_loss"]
    assert json.loads((out / "resolved_config.json").read_text()) == to_dict(config)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-20", "step-24"]  # keep_last_n
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "features").is_dir()  # the cache is shared beside the run directory

    loaded = load_model_dir(model_dir)
    assert loaded.encoder == "toyrgb:mean"
    assert loaded.config["training"]["dev_loss"] == pytest.approx(min(e["dev_loss"] for e in epochs))
    features = FeatureCache.open(next((tmp_path / "features").iterdir())).get_many(["1000_toy.jpg"])  # red
    logits, state = loaded.model.start(features)
    words = []
    for _ in range(4):
        token = logits.argmax(-1)
        words.append(token.item())
        logits, state = loaded.model.step(token, state)
    assert loaded.tokenizer.decode(words).split()[:2] == ["a", "red"]


def test_frozen_parameters_stay_put_and_get_no_optimizer_state(toy_dataset, tmp_path):
    out = tmp_path / "run"
    run(toy_dataset, out, epochs=1, weight_decay=0.1, model={"freeze_image": True})
    weights = final_weights(out)
    assert torch.equal(weights["image.weight"], torch.full_like(weights["image.weight"], 0.5))
    assert torch.equal(weights["image.bias"], torch.full_like(weights["image.bias"], 0.5))
    optimizer = torch.load(out / "checkpoints" / "step-4" / "optimizer.pt", weights_only=True)
    trainable = ["embed.weight", "head.bias", "head.weight"]  # image.* is frozen
    assert sum(len(g["params"]) for g in optimizer["param_groups"]) == len(trainable)
    assert len(optimizer["state"]) == len(trainable)


def test_gradient_accumulation_equals_the_larger_batch(toy_dataset, tmp_path):
    run(toy_dataset, tmp_path / "big", epochs=1, batch_size=4)
    run(toy_dataset, tmp_path / "accum", epochs=1, batch_size=2, grad_accum_steps=2)
    big, accum = final_weights(tmp_path / "big"), final_weights(tmp_path / "accum")
    assert [e["step"] for e in events(tmp_path / "accum", "step")] == [1, 2, 3, 4]  # updates, not micro-batches
    for name in big:
        torch.testing.assert_close(accum[name], big[name], rtol=0, atol=1e-6)


def test_early_stopping_keeps_the_best_model(tmp_path):
    # dev captions use words never seen in training: the better the model fits train, the worse dev loss gets
    data = write_toy_dataset(tmp_path / "data", dev_words="zz yy xx ww")
    out = tmp_path / "run"
    run(data, out, epochs=20, early_stopping_patience=2)
    epochs = events(out, "epoch")
    stop = events(out, "early_stop")
    assert len(stop) == 1 and len(epochs) < 20
    best = min(epochs, key=lambda e: e["dev_loss"])
    assert stop[0]["best_step"] == best["step"]
    assert [e["improved"] for e in epochs[-2:]] == [False, False]
    saved = json.loads((out / "model" / "config.json").read_text())["training"]
    assert saved["step"] == best["step"] and saved["dev_loss"] == pytest.approx(best["dev_loss"])


def test_pixels_model_trains_its_encoder_from_images(toy_dataset, tmp_path):
    out = tmp_path / "run"
    run(toy_dataset, out, epochs=1, model={"pixels": True})
    first = load_file(out / "checkpoints" / "step-4" / "model.safetensors")
    assert "image_encoder.conv.weight" in first
    assert not (tmp_path / "features").exists()  # no feature cache: pixels are decoded in the loader
    torch.manual_seed(0)
    assert load_model_dir(out / "model").model.input_kind == "pixels"


def test_max_steps_stops_mid_epoch_and_resume_of_a_finished_run_does_nothing(toy_dataset, tmp_path):
    out = tmp_path / "run"
    config = from_dict(RunConfig, toy_config(toy_dataset, out, epochs=5, max_steps=6))
    train(config)
    assert events(out, "step")[-1]["step"] == 6
    assert [e["step"] for e in events(out, "epoch")] == [4, 6]  # epoch end, then the final evaluation
    before = final_weights(out)
    train(config, resume=True)
    assert events(out, "step")[-1]["step"] == 6
    for name, tensor in final_weights(out).items():
        assert torch.equal(tensor, before[name])


def test_missing_images_are_never_trained_on(toy_dataset, tmp_path, caplog):
    (toy_dataset / "Images" / "1000_toy.jpg").unlink()  # a train image
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="captionkit"):
        run(toy_dataset, out, epochs=1)
    assert "train split: 1 of 8 images are missing; their 2 captions are not used" in caplog.text
    assert events(out, "start")[0]["train_items"] == 14


def test_a_run_directory_with_checkpoints_is_not_overwritten(toy_dataset, tmp_path):
    run(toy_dataset, tmp_path / "run", epochs=1)
    with pytest.raises(CheckpointError, match="resume it"):
        run(toy_dataset, tmp_path / "run", epochs=1)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_schedule_warms_up_then_decays(schedule):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, TrainConfig(warmup_steps=4, schedule=schedule, lr=1.0), total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == sorted(lrs[:5]) and lrs[0] < 0.25 and lrs[4] == 1.0
    if schedule == "constant":
        assert lrs[4:] == [1.0] * 16
    else:
        assert lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[-1] <= 1 / 16  # the last update still learns
        assert scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(EpochSampler(50, seed=4)) != list(EpochSampler(50, seed=3))
