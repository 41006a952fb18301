"""Fixtures of the scale tests: a tiny synthetic dataset as WebDataset shards and as parquet files, a tiny model."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scale_helpers import synthetic, write_parquet, write_shards  # noqa: E402


@pytest.fixture()
def synth(tmp_path: Path) -> Path:
    return synthetic(tmp_path, images=12)


@pytest.fixture()
def wds_dir(synth: Path, tmp_path: Path) -> Path:
    write_shards(synth, tmp_path / "wds", per_shard=3)  # 4 shards
    return tmp_path / "wds"


@pytest.fixture()
def parquet_dir(synth: Path, tmp_path: Path) -> Path:
    write_parquet(synth, tmp_path / "parquet", per_file=6)
    return tmp_path / "parquet"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random ClipCap model directory (tiny CLIP encoder, BPE learnt from a few captions)."""
    from captionkit.models.base import build_model
    from captionkit.models.model_dir import save_model_dir
    from captionkit.registry import get_model_class, get_preset

    preset = get_preset("tiny-clipcap-mlp")
    model = build_model(preset["model"])
    captions = ["a red circle .", "two blue squares on a grey background .", "a green star ."] * 10
    tokenizer = get_model_class("clipcap").build_tokenizer(model.config, captions)
    return save_model_dir(tmp_path_factory.mktemp("model") / "model", model, tokenizer, preset["encoder"])
