"""Self-critical training and --init-from: the gradient's sign on a toy, the round trip of a model's weights into a
new run, refusals of models that do not fit, and tiny end-to-end SCST runs for a ClipCap and an LSTM model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from training_toy import toy_config

from captionkit.cli import main
from captionkit.data.records import Record
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.models.base import build_model_and_tokenizer, sequence_log_probs
from captionkit.models.model_dir import load_model_dir
from captionkit.training import load_run_config, train
from captionkit.training import objectives as objectives_module
from captionkit.training.init_from import init_tokenizer, load_init_weights
from captionkit.training.logging import read_log
from captionkit.training.objectives import SelfCritical


def toy_run(toy_dataset, out, init_from=None, **train):
    """The toy run config through load_run_config (as `captionkit train --config` reads it)."""
    data = flatten(toy_config(toy_dataset, out, **train))
    return load_run_config(overrides=[f"{k}={json.dumps(v)}" for k, v in data.items()], init_from=init_from)


def flatten(data, prefix=""):
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("train", "eval", "scst"):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.fixture()
def toy_parent(toy_dataset, tmp_path):
    """A toy model trained with cross-entropy: RUN_DIR/model."""
    return train(toy_run(toy_dataset, tmp_path / "parent", epochs=1))


# ------------------------------------------------------------------------------------------------- --init-from
def test_init_from_loads_exactly_the_source_weights(toy_parent, toy_dataset, tmp_path):
    config = load_run_config(
        overrides=[f"dataset={toy_dataset}", f"out={tmp_path / 'child'}", "train.num_workers=0", "eval.metrics=[]"],
        init_from=str(toy_parent),
    )
    source = json.loads((toy_parent / "config.json").read_text())
    assert config.model == source["model"] and config.encoder == source["encoder"]  # taken from the directory
    model, tokenizer = build_model_and_tokenizer(config.model, ["unrelated words only"], init_tokenizer(toy_parent))
    assert tokenizer.words == load_model_dir(toy_parent).tokenizer.words  # the source's vocabulary, not the data's
    stored = load_file(str(toy_parent / "model.safetensors"))
    assert not torch.equal(model.state_dict()["head.weight"], stored["head.weight"])  # a fresh model differs
    load_init_weights(model, toy_parent)
    for key, value in model.state_dict().items():
        assert torch.equal(value, stored[key]), key


def test_a_run_with_init_from_starts_from_the_source_weights(toy_parent, toy_dataset, tmp_path):
    """One update at a negligible learning rate: the child's weights are the parent's (a fresh start is far off)."""
    settings = {"epochs": 1, "max_steps": 1, "lr": 1e-9}
    fresh = load_file(str(train(toy_run(toy_dataset, tmp_path / "fresh", **settings)) / "model.safetensors"))
    config = toy_run(toy_dataset, tmp_path / "tuned", **settings)
    config.init_from = str(toy_parent)  # the Python path: RunConfig.init_from
    tuned = load_file(str(train(config) / "model.safetensors"))
    parent = load_file(str(toy_parent / "model.safetensors"))
    assert max(float((tuned[k] - parent[k]).abs().max()) for k in parent) < 1e-6
    assert max(float((fresh[k] - parent[k]).abs().max()) for k in parent) > 1e-2
    (start,) = [e for e in read_log(tmp_path / "tuned") if e["event"] == "start"]
    assert start["init_from"] == str(toy_parent)


def test_init_from_refuses_other_architectures_in_one_line(toy_parent, toy_dataset, tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(toy_config(toy_dataset, tmp_path / "run", model={"hidden": 8})))
    assert main(["train", "--config", str(config), "--init-from", str(toy_parent)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not fit the configured toy-train model" in err
    assert "head.weight (16, 16) vs (16, 8)" in err and "image.weight (16, 3) vs (8, 3)" in err
    assert (
        main(
            [
                "train",
                "--preset",
                "tiny-show-tell-merge-scst",
                "--dataset",
                str(toy_dataset),
                "--out",
                str(tmp_path / "r2"),
                "--init-from",
                str(toy_parent),
            ]
        )
        == 2
    )
    assert "model.type='show-tell-merge' but init_from" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--preset",
                "tiny-show-tell-merge-scst",
                "--dataset",
                str(toy_dataset),
                "--out",
                str(tmp_path / "r3"),
            ]
        )
        == 2
    )
    assert "train.objective='scst' fine-tunes a trained model" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()


# --------------------------------------------------------------------------------------------- gradient sign
def test_scst_raises_the_probability_of_a_sample_rewarded_above_its_baseline(
    toy_parent, toy_dataset, tmp_path, monkeypatch
):
    """One image, two fixed samples: the one matching the references has the higher CIDEr-D, so with the
    mean-of-others baseline its advantage is positive; one SGD step on the objective's loss must raise its
    log-probability and lower the other's (a flipped sign does the opposite)."""
    loaded = load_model_dir(toy_parent)
    model, tok = loaded.model.train(), loaded.tokenizer
    captions = {
        "img": ("a red square .", "a red block ."),
        "other": ("a green patch .",),
        "third": ("a black block .",),
    }
    records = [
        Record(image_id=k, image_path=tmp_path / f"{k}.jpg", captions=v, split="train") for k, v in captions.items()
    ]  # CIDEr-D's idf needs more than one image
    config = toy_run(toy_dataset, tmp_path / "scst", init_from=str(toy_parent), objective="scst")
    config.scst.samples = 2
    objective = SelfCritical(config, tok, records)
    good, bad = tok.encode("a red square ."), tok.encode("blue blue blue")
    monkeypatch.setattr("captionkit.decoding.generate", lambda *args, **kwargs: [good, bad])
    features = torch.tensor([[0.9, 0.1, 0.1]])

    def log_probs() -> torch.Tensor:
        ids, mask = objective.targets([good, bad], features.device)
        with torch.no_grad():
            return sequence_log_probs(model, features.repeat(2, 1), ids, mask)[0].sum(dim=1)

    before = log_probs()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, stats = objective.loss(model, model, {"features": features, "image_ids": ["img"]})
    assert float(stats["reward"]) > 0 and float(stats["baseline"]) == pytest.approx(float(stats["reward"]))
    loss.backward()
    optimizer.step()
    after = log_probs()
    assert after[0] > before[0] and after[1] < before[1]


# ------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", images=12, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "parent,preset",
    [("tiny-clipcap-mlp", "tiny-clipcap-mlp-scst"), ("tiny-show-tell-merge", "tiny-show-tell-merge-scst")],
)
def test_tiny_scst_preset_fine_tunes_a_cross_entropy_model(parent, preset, synthetic, tmp_path, capsys):
    short = ["--set", "train.max_steps=2", "--set", "train.batch_size=2", "--set", "eval.max_images=2"]
    assert (
        main(["train", "--preset", parent, "--dataset", str(synthetic), "--out", str(tmp_path / "ce"), *short]) == 0
    ), capsys.readouterr().err
    out = tmp_path / "scst"
    assert (
        main(
            [
                "train",
                "--preset",
                preset,
                "--init-from",
                str(tmp_path / "ce" / "model"),
                "--dataset",
                str(synthetic),
                "--out",
                str(out),
                *short,
            ]
        )
        == 0
    ), capsys.readouterr().err
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["train"]["objective"] == "scst" and resolved["init_from"] == str(tmp_path / "ce" / "model")
    log = read_log(out)
    (epoch,) = [e for e in log if e["event"] == "epoch"]
    assert {"train_reward", "train_baseline", "dev_CIDEr"} <= set(epoch)
    assert epoch["train_sample_tokens"] >= 1
    loaded, ce = load_model_dir(out / "model"), load_model_dir(tmp_path / "ce" / "model")
    assert loaded.config["model"] == ce.config["model"] and loaded.encoder == ce.encoder
    assert loaded.tokenizer.vocab_size == ce.tokenizer.vocab_size
    trained, start = loaded.model.state_dict(), ce.model.state_dict()
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # the SCST updates changed the weights


def test_scst_settings_are_checked(toy_dataset, tmp_path):
    from captionkit.errors import ConfigError

    base = [
        f"dataset={toy_dataset}",
        f"out={tmp_path}",
        "model={type: toy-train}",
        "encoder=toyrgb:mean",
        "train.objective=scst",
        "init_from=unused",
    ]
    for setting, message in [
        ("scst.samples=1", "needs scst.samples >= 2"),
        ("scst.baseline=best", "scst.baseline='best'; valid: mean, greedy"),
        ("scst.decoding={num_beams: 3}", "num_beams must be 1"),
        ("scst.decoding={top_p: 2}", "top_p must be in"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_run_config(overrides=base + [setting])
    assert objectives_module.OBJECTIVES.keys() == {"cross_entropy", "scst"}
