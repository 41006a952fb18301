"""`captionkit features extract` under `torchrun --nproc_per_node 2` (gloo on CPU) writes the same cache as one
process: same keys, equal vectors, the documented layout; a rerun resumes by input shard."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from scale_helpers import subprocess_env, torchrun

from captionkit.cli import main
from captionkit.data.features import FeatureCache

ENCODER = "vgg16-small:fc2"


def _extract(dataset, out, extra=()):
    return [
        "features",
        "extract",
        "--dataset",
        str(dataset),
        "--encoder",
        ENCODER,
        "--out",
        str(out),
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--no-progress",
        *extra,
    ]


def _same_cache(a, b):
    one, two = FeatureCache.open(a), FeatureCache.open(b)
    assert sorted(one.ids) == sorted(two.ids) and len(one) > 0
    torch.testing.assert_close(two.get_many(one.ids), one.get_many(one.ids), rtol=0, atol=0)
    assert one.failed == two.failed


@pytest.mark.slow
@pytest.mark.parametrize("source", ["wds_dir", "synth"])
def test_two_processes_write_the_cache_one_process_writes(source, request, tmp_path):
    dataset = request.getfixturevalue(source)  # 4 tar shards, or a folder cut into input shards of 5 images
    extra = ["--shard-size", "5"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert main(_extract(dataset, single, extra)) == 0
    done = subprocess.run(
        torchrun("-m", "captionkit.cli", *_extract(dataset, multi, extra)),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("images of split 'all' encoded") == 1  # rank 0 reports once
    _same_cache(single, multi)

    manifest = json.loads((multi / "manifest.json").read_text())
    index = json.loads((multi / "index.json").read_text())
    assert manifest["complete"] and manifest["count"] == len(index) == 12
    for image_id, (shard, row) in index.items():  # the documented layout: {id: [shard, row]} + "features"
        with safe_open(str(multi / f"shard-{shard:05d}.safetensors"), "pt") as f:
            assert json.loads(f.metadata()["ids"])[row] == image_id
            assert f.get_tensor("features").shape[0] > row
    parts = sorted(json.loads(p.read_text())["shard"] for p in (multi / "parts").glob("0*.json"))
    assert parts == list(range(len(parts))) and len(parts) == (4 if source == "wds_dir" else 3)


def test_a_rerun_redoes_only_the_unfinished_input_shards(wds_dir, tmp_path):
    out = tmp_path / "feats"
    assert main(_extract(wds_dir, out)) == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.safetensors")}
    (out / "parts" / "00002.json").unlink()  # as if the process encoding input shard 2 was killed before its commit
    (out / "shard-00002.safetensors").unlink()
    (out / "manifest.json").unlink()
    assert main(_extract(wds_dir, out)) == 0
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.safetensors")}
    assert set(again) == set(first)
    assert [n for n in first if again[n] != first[n]] == ["shard-00002.safetensors"]
    assert len(FeatureCache.open(out)) == 12


def test_another_encoder_into_the_same_directory_is_refused(wds_dir, tmp_path, capsys):
    out = tmp_path / "feats"
    assert main(_extract(wds_dir, out)) == 0
    args = _extract(wds_dir, out)
    args[args.index(ENCODER)] = "vgg16-small:conv5_3"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "encoder: cache has 'vgg16-small:fc2', asked for 'vgg16-small:conv5_3'" in err and err.count("\n") == 1


def test_unreadable_members_are_recorded_as_failed(wds_dir, tmp_path):
    from scale_helpers import append_corrupt_member

    append_corrupt_member(wds_dir / "00001.tar")
    out = tmp_path / "feats"
    assert main(_extract(wds_dir, out)) == 0
    cache = FeatureCache.open(out)
    assert len(cache) == 12 and list(cache.failed) == ["zz_corrupt"]
    assert "00001.tar::zz_corrupt.jpg" in cache.failed["zz_corrupt"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
