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


def test_every_preset_says_what_data_it_is_meant_for():
    from captionkit.registry import get_preset, preset_summaries

    summaries = preset_summaries()
    shipped = [name for name in summaries if not name.startswith("demo-")]
    assert shipped and all(summaries[name]["meant_for"] and summaries[name]["description"] for name in shipped)
    # issue 16: the paper's 5,000 warm-up steps stay reachable for COCO; Flickr8k-size runs warm up over 5% of the run
    for paper in ("clipcap-mlp", "clipcap-transformer"):
        assert get_preset(f"{paper}-coco")["train"]["warmup_steps"] == 5000
        flickr = get_preset(paper)["train"]
        assert "warmup_steps" not in flickr and flickr["warmup_ratio"] == 0.05
        assert get_preset(f"{paper}-coco")["model"] == get_preset(paper)["model"]


def test_a_warmup_ratio_fits_the_run_length():
    """750 steps an epoch, 10 epochs (Flickr8k at batch 40): warm-up ends after 5% = 375 steps, not 5,000."""
    from captionkit.registry import get_preset
    from captionkit.training.config import TrainConfig
    from captionkit.training.engine import make_scheduler

    settings = get_preset("clipcap-mlp")["train"]
    config = TrainConfig(**settings)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = make_scheduler(optimizer, config, total_steps=7500)
    factors = [scheduler.lr_lambdas[0](step) for step in (0, 374, 375, 7499)]
    assert factors[0] < factors[1] < 1.0 and factors[2] == pytest.approx(1.0) and factors[3] < 0.01
