"""`captionkit features extract | info` end to end on a synthetic dataset and on the real Flickr8k sample."""

from __future__ import annotations

import json

import pytest
import torch

from captionkit.cli import main
from captionkit.data.features import FeatureCache, dataset_fingerprint
from captionkit.data.formats import load_dataset
from captionkit.data.images import load_image
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.models.encoders import load_encoder


def test_extract_then_info_on_a_synthetic_dataset(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "data", images=8, seed=0, size=64)
    out = tmp_path / "feats"
    args = [
        "features",
        "extract",
        "--dataset",
        str(data),
        "--encoder",
        "vgg16-small:conv5_3",
        "--out",
        str(out),
        "--workers",
        "0",
        "--batch-size",
        "3",
        "--no-progress",
    ]
    assert main(args + ["--split", "train"]) == 0
    dataset = load_dataset(data)
    train = dataset.split("train")
    assert f"{len(train)} of {len(train)} images of split 'train' encoded" in capsys.readouterr().out
    cache = FeatureCache.open(
        out, expect_encoder="vgg16-small:conv5_3", expect_fingerprint=dataset_fingerprint(dataset.records)
    )
    assert sorted(cache.ids) == sorted(r.image_id for r in train)
    encoder = load_encoder("vgg16-small:conv5_3")
    first = train[0]
    torch.testing.assert_close(
        cache.get(first.image_id), encoder.encode_images([load_image(first.image_path)])[0], rtol=1e-5, atol=1e-5
    )

    assert main(args + ["--split", "all"]) == 0  # same cache, the other splits' images added
    assert len(FeatureCache.open(out)) == len({r.image_id for r in dataset.records})

    capsys.readouterr()
    assert main(["features", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "vgg16-small:conv5_3" in text and "(49, 64) float32" in text and "row-major" in text
    assert main(["features", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == len(FeatureCache.open(out)) and info["complete"] and info["failed"] == 0

    assert main(args[:5] + ["vgg16-small:fc2"] + args[6:]) == 2  # another encoder into the same directory
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "encoder: cache has 'vgg16-small:conv5_3', asked for 'vgg16-small:fc2'" in err and "delete" in err


def test_extract_on_the_flickr8k_sample_records_missing_images(flickr8k_fixture, tmp_path, capsys):
    out = tmp_path / "feats"
    assert (
        main(
            [
                "features",
                "extract",
                "--dataset",
                str(flickr8k_fixture),
                "--encoder",
                "vgg16-small:fc2",
                "--out",
                str(out),
                "--split",
                "train",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "69 of 6000 images of split 'train' encoded" in capsys.readouterr().out
    cache = FeatureCache.open(out)
    assert len(cache) == 69 and len(cache.failed) == 6000 - 69
    assert all((flickr8k_fixture / "Images" / i).is_file() for i in cache.ids)


def test_info_on_a_directory_that_is_not_a_cache(tmp_path, capsys):
    assert main(["features", "info", str(tmp_path)]) == 2
    assert "not a feature cache" in capsys.readouterr().err


@pytest.mark.parametrize("spec", ["vgg16-small:fc7", "nope:x"])
def test_unknown_encoder_is_one_line(tmp_path, capsys, spec):
    data = write_synthetic_dataset(tmp_path / "data", images=2, seed=0, size=64)
    assert main(["features", "extract", "--dataset", str(data), "--encoder", spec, "--out", str(tmp_path / "f")]) == 2
    assert "valid:" in capsys.readouterr().err
