"""Checkpoints: a run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run, even
when its newest checkpoint is damaged; half-written checkpoints are never loaded."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import HERE, subprocess_env
from safetensors.torch import load_file
from training_toy import toy_config

from captionkit.cli import main
from captionkit.training.checkpoint import STATE_NAME, find_checkpoints
from captionkit.training.logging import read_log

ENTRY = str(HERE / "toy_cli.py")
TOTAL_STEPS = 24  # 16 pairs, batch 2 -> 8 updates per epoch, 3 epochs


def write_config(path: Path, dataset: Path, out: Path) -> Path:
    # dropout on: the resumed run must replay the same random masks, not just the same data order
    config = toy_config(
        dataset,
        out,
        epochs=3,
        batch_size=2,
        checkpoint_every_steps=3,
        keep_last_n=3,
        model={"dropout": 0.3, "delay": 0.05},
    )
    path.write_text(json.dumps(config))
    return path


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, ENTRY, *args],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    return output


def newest_step(run_dir: Path) -> int:
    done = [int(p.parent.name[5:]) for p in (run_dir / "checkpoints").glob(f"step-*/{STATE_NAME}")]
    return max(done, default=0)


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run_exactly(toy_dataset, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    # the uninterrupted reference runs in this process (one thread, like the subprocesses): one start-up less
    assert main(["train", "--config", str(write_config(tmp_path / "ref.json", toy_dataset, reference))]) == 0

    proc = cli("train", "--config", str(write_config(tmp_path / "run.json", toy_dataset, killed)))
    deadline = time.monotonic() + 180
    while newest_step(killed) < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    reached = newest_step(killed)
    assert 12 <= reached < TOTAL_STEPS, "the run must be killed part-way"

    # damage the newest checkpoint as a torn write would: resuming must fall back to an older one; damage the next
    # too if it is an epoch end, so the run resumes mid-epoch (the data position then matters)
    ordered = sorted((killed / "checkpoints").glob("step-*"), key=lambda p: -int(p.name[5:]))
    damaged = ordered[:1] + [
        p for p in ordered[1:2] if json.loads((p / STATE_NAME).read_text())["batches_in_epoch"] == 0
    ]
    for path in damaged:
        weights = path / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    output = finish(cli("train", "--out", str(killed), "--resume"))  # config from RUN_DIR/resolved_config.json
    for path in damaged:
        assert f"checkpoint {path.name} is not usable" in output
        assert (killed / "checkpoints" / f".invalid-{path.name}").is_dir()
    (resumed,) = [e for e in read_log(killed) if e["event"] == "resume"]
    assert resumed["batches_in_epoch"] > 0 and resumed["path"].endswith(ordered[len(damaged)].name)

    ref_final = load_file(reference / "checkpoints" / f"step-{TOTAL_STEPS}" / "model.safetensors")
    got_final = load_file(killed / "checkpoints" / f"step-{TOTAL_STEPS}" / "model.safetensors")
    assert ref_final.keys() == got_final.keys()
    for name in ref_final:
        assert torch.equal(got_final[name], ref_final[name]), name
    ref_best = load_file(reference / "model" / "model.safetensors")
    got_best = load_file(killed / "model" / "model.safetensors")
    for name in ref_best:
        assert torch.equal(got_best[name], ref_best[name]), name
    # the log reads like one run: every step once, the same losses
    ref_steps = [(e["step"], e["train_loss"]) for e in read_log(reference) if e["event"] == "step"]
    got_steps = [(e["step"], e["train_loss"]) for e in read_log(killed) if e["event"] == "step"]
    assert got_steps == ref_steps


def test_half_written_checkpoints_are_never_resumed_from(tmp_path):
    run_dir = tmp_path / "run"
    root = run_dir / "checkpoints"
    good = root / "step-4"
    good.mkdir(parents=True)
    (good / "model.safetensors").write_bytes(b"x" * 10)
    (good / STATE_NAME).write_text(
        json.dumps({"global_step": 4, "epoch": 1, "batches_in_epoch": 0, "files": {"model.safetensors": 10}})
    )
    (root / "step-6").mkdir()  # renamed in place but without its state file: cannot happen, must not load anyway
    (root / ".tmp-step-8").mkdir()  # a write the crash interrupted
    (root / ".tmp-step-8" / STATE_NAME).write_text("{}")
    valid, invalid = find_checkpoints(run_dir)
    assert [p.name for p, _ in valid] == ["step-4"]
    assert [p.name for p in invalid] == ["step-6"]


def test_unloadable_checkpoint_falls_back_to_the_previous_one(toy_dataset, tmp_path, caplog):
    from captionkit.config import from_dict
    from captionkit.training import RunConfig, train

    out = tmp_path / "run"
    config = from_dict(RunConfig, toy_config(toy_dataset, out, epochs=2, model={"dropout": 0.3}))
    train(config)
    finished = load_file(out / "checkpoints" / "step-8" / "model.safetensors")
    optimizer = out / "checkpoints" / "step-8" / "optimizer.pt"
    optimizer.write_bytes(b"\0" * optimizer.stat().st_size)  # same size: only loading it can tell
    train(config, resume=True)
    assert "step-8: cannot be loaded" in caplog.text
    assert (out / "checkpoints" / ".invalid-step-8").is_dir()
    (resumed,) = [e for e in read_log(out) if e["event"] == "resume"]
    assert resumed["step"] == 4
    redone = load_file(out / "checkpoints" / "step-8" / "model.safetensors")
    for name in finished:
        assert torch.equal(redone[name], finished[name]), name
