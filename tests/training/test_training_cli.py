"""`captionkit train`: config file + --set overrides, presets by name, errors a user can fix as one line."""

import json
import subprocess
import sys

import yaml
from conftest import subprocess_env
from training_toy import toy_config

from captionkit.cli import main
from captionkit.registry import list_presets


def test_config_file_with_set_overrides_writes_the_resolved_config(toy_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(toy_config(toy_dataset, out, epochs=3, batch_size=4)))
    code = main(
        [
            "train",
            "--config",
            str(config),
            "--set",
            "train.epochs=1",
            "--set",
            "train.lr=2e-2",
            "--set",
            "model.hidden=8",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == f"model: {out / 'model'}"
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["train"]["epochs"] == 1 and resolved["train"]["lr"] == 0.02
    assert resolved["train"]["batch_size"] == 4  # from the file
    assert resolved["model"] == {"type": "toy-train", "hidden": 8}
    assert resolved["eval"]["split"] == "dev"  # defaults are written out too
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["model"]["hidden"] == 8 and saved["model"]["vocab_size"] > 4  # filled from the tokenizer


def test_flags_override_the_config_file(toy_dataset, tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(toy_config(toy_dataset, tmp_path / "ignored", epochs=1)))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "chosen")]) == 0
    assert (tmp_path / "chosen" / "model").is_dir() and not (tmp_path / "ignored").exists()


def test_unknown_preset_lists_the_valid_names(tmp_path, capsys):
    code = main(["train", "--preset", "no-such-preset", "--dataset", str(tmp_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown preset 'no-such-preset'" in err and err.count("\n") == 1
    for name in list_presets():
        assert name in err


def test_bad_settings_are_one_line_errors_naming_the_key(toy_dataset, tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(toy_config(toy_dataset, tmp_path / "run")))
    assert main(["train", "--config", str(config), "--set", "train.learning_rate=1"]) == 2
    err = capsys.readouterr().err
    assert "config.train: unknown key(s) ['learning_rate']" in err and "'lr'" in err
    assert main(["train", "--config", str(config), "--set", "train.schedule=exponential"]) == 2
    assert "train.schedule='exponential'; valid: linear, cosine, constant" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--set", "train.early_stopping_metric=CIDEr"]) == 2
    assert "is not computed" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--set", "eval.metrics=[CIDEr, nope]"]) == 2
    assert "eval.metrics: unknown metric 'nope'" in capsys.readouterr().err
    assert main(["train", "--dataset", str(toy_dataset)]) == 2
    assert "--preset NAME" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "captionkit.cli", "train", "--help"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--resume" in done.stdout and "torchrun" in done.stdout


def test_a_cache_from_features_extract_is_reused_and_a_mismatching_one_refused(toy_dataset, tmp_path, capsys, caplog):
    cache = tmp_path / "cache"
    assert (
        main(
            [
                "features",
                "extract",
                "--dataset",
                str(toy_dataset),
                "--encoder",
                "toyrgb:mean",
                "--out",
                str(cache),
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    config = tmp_path / "run.json"
    config.write_text(json.dumps(toy_config(toy_dataset, tmp_path / "run", epochs=1)))
    with caplog.at_level("INFO", logger="captionkit"):
        assert main(["train", "--config", str(config), "--features", str(cache)]) == 0
    assert f"features: reusing {cache}" in caplog.text
    assert not (tmp_path / "features").exists()

    config.write_text(json.dumps({**toy_config(toy_dataset, tmp_path / "run2", epochs=1), "encoder": "toyrgb:other"}))
    assert main(["train", "--config", str(config), "--features", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "does not match: encoder: cache has 'toyrgb:mean', asked for 'toyrgb:other'" in err
