"""`torchrun --nproc_per_node 2` on CPU trains ONE model: gradients are averaged across the two processes, so
2 processes x batch 2 match 1 process x batch 4, and both processes end with bit-identical weights."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import HERE, subprocess_env
from safetensors.torch import load_file
from training_toy import toy_config

from captionkit.config import from_dict
from captionkit.training import RunConfig, train
from captionkit.training.checkpoint import read_process_state
from captionkit.training.logging import read_log

FINAL = "step-8"  # 16 pairs, global batch 4 -> 4 updates per epoch, 2 epochs


@pytest.mark.slow
def test_two_processes_train_one_model_with_averaged_gradients(toy_dataset, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    train(from_dict(RunConfig, toy_config(toy_dataset, single, batch_size=4)))

    config = tmp_path / "multi.json"
    config.write_text(json.dumps(toy_config(toy_dataset, multi, batch_size=2)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HERE / "toy_cli.py"),
            "train",
            "--config",
            str(config),
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    start = [e for e in read_log(multi) if e["event"] == "start"]
    assert start == [{**start[0], "processes": 2, "global_batch": 4}]  # one log, written by one process
    checkpoint = multi / "checkpoints" / FINAL
    digests = {read_process_state(checkpoint, rank)["weights_digest"] for rank in (0, 1)}
    assert len(digests) == 1  # the two replicas are bit-identical

    one = load_file(single / "checkpoints" / FINAL / "model.safetensors")
    two = load_file(checkpoint / "model.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5)
    dev_one = [e["dev_loss"] for e in read_log(single) if e["event"] == "epoch"]
    dev_two = [e["dev_loss"] for e in read_log(multi) if e["event"] == "epoch"]
    assert dev_two == pytest.approx(dev_one, abs=1e-5)  # dev loss gathered over both processes' shares
