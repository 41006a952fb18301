"""Two-stage training, as the seed's ClipCap does it: pretrain on web image-text pairs (WebDataset shards of
alt-text-style captions), then fine-tune on human captions (the Flickr8k layout) with `train --init-from`."""

import io
import json
import tarfile

import pytest
import torch
from safetensors.torch import load_file

from captionkit.cli import main
from captionkit.data.formats import load_dataset
from captionkit.data.synthetic import write_synthetic_dataset

TRAIN = [
    "--set",
    "train.max_steps=2",
    "--set",
    "train.batch_size=4",
    "--set",
    "eval.max_images=2",
    "--set",
    "eval.decoding={max_new_tokens: 4}",
    "--set",
    "eval.metrics=[]",
    "--set",
    "train.early_stopping_metric=dev_loss",
]


def alt_text_shards(out, seed: int = 5, images: int = 12, per_shard: int = 6):
    """Scenes of another seed with short, noisy web-style captions (lowercase keywords, no sentence), as img2dataset
    writes them: KEY.jpg + KEY.txt + KEY.json."""
    source = write_synthetic_dataset(out / "source", images=images, seed=seed, size=64)
    records = load_dataset(source).records
    shards = []
    for s in range(0, len(records), per_shard):
        path = out / "shards" / f"{s // per_shard:05d}.tar"
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w") as tar:
            for r in records[s : s + per_shard]:
                alt = " ".join(w for w in r.captions[0].split() if w not in ("a", "an", "the", ".", ","))
                for suffix, data in (
                    ("jpg", r.image_path.read_bytes()),
                    ("txt", f"stock photo {alt}".encode()),
                    ("json", json.dumps({"key": r.image_id, "split": r.split}).encode()),
                ):
                    info = tarfile.TarInfo(f"{r.image_path.stem}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        shards.append(path)
    return out / "shards" / "{00000..00001}.tar"


@pytest.mark.slow
def test_pretrain_on_shards_then_fine_tune_on_human_captions(tmp_path, capsys):
    pattern = alt_text_shards(tmp_path / "web")
    stage1 = tmp_path / "stage1"
    assert (
        main(["train", "--preset", "tiny-clipcap-mlp", "--dataset", str(pattern), "--out", str(stage1), *TRAIN]) == 0
    ), capsys.readouterr().err
    flickr = write_synthetic_dataset(tmp_path / "flickr8k", images=12, seed=0, size=64)  # the Flickr8k layout
    stage2 = tmp_path / "stage2"
    assert (
        main(
            [
                "train",
                "--init-from",
                str(stage1 / "model"),
                "--dataset",
                str(flickr),
                "--out",
                str(stage2),
                "--set",
                "train.max_steps=1",
                *TRAIN[2:],
            ]
        )
        == 0
    ), capsys.readouterr().err
    first = load_file(str(stage1 / "model" / "model.safetensors"))
    second = load_file(str(stage2 / "model" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert any(not torch.equal(first[k], second[k]) for k in first)  # stage 2 trained ...
    change = sum((first[k] - second[k]).abs().sum() for k in first) / sum(first[k].abs().sum() for k in first)
    assert change < 0.2  # ... one step on from stage 1's weights (a fresh initialisation differs by ~100%)
    resolved = json.loads((stage2 / "resolved_config.json").read_text())
    assert resolved["init_from"] == str(stage1 / "model") and resolved["model"]["type"] == "clipcap"
    # the tokenizer of stage 1 is kept: fine-tuning never re-learns or resizes the vocabulary
    for name in ("vocab.json", "merges.txt"):
        assert (stage1 / "model" / name).read_text() == (stage2 / "model" / name).read_text()
    # a model of another architecture is refused with the differing keys
    bad = tmp_path / "bad"
    assert (
        main(
            [
                "train",
                "--init-from",
                str(stage1 / "model"),
                "--dataset",
                str(flickr),
                "--out",
                str(bad),
                "--set",
                "model.prefix_length=3",
                *TRAIN,
            ]
        )
        == 2
    )
    assert "shape" in capsys.readouterr().err.lower()
