"""`captionkit demo` end to end on a tiny configuration: every step runs, outputs exist, a rerun reuses them."""
import json

import pytest
import yaml

from captionkit.cli import main
from captionkit.demo import DEMO_MODELS

TINY_TRAIN = ["train.epochs=1", "train.max_steps=2", "train.batch_size=8", "eval.metrics=[]", "eval.max_images=4",
              "train.early_stopping_metric=dev_loss"]


@pytest.mark.slow
def test_demo_runs_every_step_and_reuses_them(tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = {name: list(TINY_TRAIN) for name in DEMO_MODELS}
    for name in ("demo-clipcap-mlp", "demo-clipcap-transformer"):
        overrides[name].append("model.clip_dim=16")  # the tiny demo CLIP's embedding size
    config = {"images": 30, "size": 64, "decoding": {"max_new_tokens": 6}, "overrides": overrides,
              "clip": {"epochs": 1, "image_size": 64, "width": 32, "layers": 1, "projection_dim": 16,
                       "batch_size": 16}}
    config_file = tmp_path / "demo.yaml"
    config_file.write_text(yaml.safe_dump(config))
    args = ["demo", "--out", str(out), "--config", str(config_file)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "metrics.json").read_text())
    assert set(results["models"]) == set(DEMO_MODELS)
    for scores in [*results["models"].values(), results["baselines"]["blind"]]:
        assert {"Bleu_4", "CIDEr", "ROUGE_L", "object_f1"} <= set(scores)
    assert "| demo-clipcap-mlp |" in printed and "baseline: blind" in printed
    assert (out / "report.html").is_file() and (out / "vgg16-small.pth").is_file()
    assert (out / "gpt2" / "config.json").is_file()

    markers = {p.name: p.stat().st_mtime_ns for p in (out / ".steps").iterdir()}
    assert main(args) == 0  # everything done before: reused
    assert {p.name: p.stat().st_mtime_ns for p in (out / ".steps").iterdir()} == markers
