"""Every tiny preset trains through `captionkit train --preset` on the synthetic dataset (features extracted, or
pixels decoded for end-to-end models; dev loss and caption metrics computed) and leaves a model directory that
loads and decodes."""

import json

import pytest
import torch

from captionkit.cli import main
from captionkit.data.features import FeatureCache
from captionkit.data.images import load_image
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.decoding import generate
from captionkit.models.model_dir import load_model_dir
from captionkit.registry import list_presets
from captionkit.training.logging import read_log

# the *-scst presets start from a trained model: tests/training/test_scst.py runs them
TINY = sorted(name for name in list_presets() if name.startswith("tiny-") and not name.endswith("-scst"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", images=12, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("preset", TINY)
def test_tiny_preset_trains_and_loads(preset, synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--preset",
            preset,
            "--dataset",
            str(synthetic),
            "--out",
            str(out),
            "--set",
            "train.max_steps=2",
            "--set",
            "train.batch_size=4",
            "--set",
            "eval.max_images=2",
            "--set",
            "eval.decoding={max_new_tokens: 5}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["description"] and resolved["train"]["max_steps"] == 2
    (last_eval,) = [e for e in read_log(out) if e["event"] == "epoch"]
    assert last_eval["step"] == 2 and "dev_CIDEr" in last_eval and last_eval["examples"]

    loaded = load_model_dir(out / "model")
    assert loaded.encoder == resolved["encoder"]
    if getattr(loaded.model, "input_kind", "features") == "pixels":
        assert not (tmp_path / "features").exists()  # end to end: no feature cache
        image = next((synthetic / "Images").iterdir())
        inputs = loaded.model.image_encoder.preprocess(load_image(image))[None]
    else:
        cache = FeatureCache.open(next((tmp_path / "features").iterdir()), expect_encoder=resolved["encoder"])
        inputs = cache.get_many(cache.ids[:1])
    with torch.no_grad():
        ids = generate(loaded.model, inputs, eos_token_id=loaded.tokenizer.eos_token_id, max_new_tokens=3)
    assert len(ids) == 1 and len(ids[0]) <= 3
