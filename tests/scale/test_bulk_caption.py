"""`captionkit caption MODEL --dataset SOURCE --out DIR`: per-shard JSONL files joined in input order; under
torchrun two processes give the captions one process gives, and a run whose second process was killed resumes,
redoing only the shards that were not finished."""

import json
import subprocess

import pytest
from scale_helpers import HERE, subprocess_env, torchrun

from captionkit.cli import main


def _rows(out):
    return [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]


def _caption(model, dataset, out):
    return ["caption", str(model), "--dataset", str(dataset), "--out", str(out), "--batch-size", "2"]


def test_one_process_writes_a_row_per_image_in_input_order(tiny_model_dir, wds_dir, tmp_path):
    from scale_helpers import append_corrupt_member

    append_corrupt_member(wds_dir / "00001.tar")
    out = tmp_path / "caps"
    assert main(_caption(tiny_model_dir, wds_dir, out)) == 1  # an unreadable image: exit 1 unless --keep-going
    rows = _rows(out)
    assert [r["key"] for r in rows] == [f"synth_{i:06d}" for i in range(12)]  # shard order, member order
    assert all(set(r) == {"key", "caption", "model", "decoding"} and isinstance(r["caption"], str) for r in rows)
    assert rows[0]["model"] == str(tiny_model_dir) and rows[0]["decoding"]["num_beams"] == 1
    assert sorted(p.name for p in out.glob("0*.jsonl")) == [f"0000{i}.jsonl" for i in range(4)]
    unreadable = json.loads((out / "unreadable.json").read_text())
    assert list(unreadable) == ["zz_corrupt"] and "00001.tar::zz_corrupt.jpg" in unreadable["zz_corrupt"]

    before = {p.name: p.stat().st_mtime_ns for p in out.glob("0*.jsonl")}
    assert main(_caption(tiny_model_dir, wds_dir, out) + ["--keep-going"]) == 0  # a rerun skips finished shards
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("0*.jsonl")} == before
    assert _rows(out) == rows


@pytest.mark.slow
def test_two_processes_killed_and_resumed_give_the_single_process_captions(tiny_model_dir, wds_dir, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert main(_caption(tiny_model_dir, wds_dir, single)) == 0
    command = torchrun(str(HERE / "kill_cli.py"), *_caption(tiny_model_dir, wds_dir, multi))
    killed = subprocess.run(
        command, env={**subprocess_env(), "CAPTIONKIT_TEST_KILL_RANK": "1"}, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode != 0  # rank 1 died after its first shard (00001); torchrun stops the run
    assert (multi / "00001.jsonl").is_file() and not (multi / "00003.jsonl").is_file()
    assert not (multi / "captions.jsonl").exists()
    kept = (multi / "00001.jsonl").stat().st_mtime_ns

    resumed = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (multi / "00001.jsonl").stat().st_mtime_ns == kept  # finished before the kill: not redone
    assert _rows(multi) == _rows(single)
