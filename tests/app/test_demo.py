"""`captionkit demo` end to end on a tiny configuration: every step runs, outputs exist, a rerun reuses them."""

import json

import pytest
import yaml

from captionkit.cli import main
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.demo import DEMO_MODELS, Steps, pipeline
from captionkit.registry import get_preset
from captionkit.training.logging import read_log

TINY_TRAIN = [
    "train.epochs=1",
    "train.max_steps=2",
    "train.batch_size=8",
    "eval.metrics=[]",
    "eval.max_images=4",
    "train.early_stopping_metric=dev_loss",
]


@pytest.mark.slow
def test_demo_runs_every_step_and_reuses_them(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    rows = [*DEMO_MODELS, "demo-clipcap-mlp+scst", "demo-show-attend-tell+scst"]
    overrides = {name: list(TINY_TRAIN) for name in rows}
    for name in ("demo-clipcap-mlp", "demo-clipcap-transformer"):
        overrides[name].append("model.clip_dim=64")  # the tiny CLIP's embedding size
    # random encoders of the demo's shapes instead of the shipped pretrained ones: this tests the steps, not quality
    config = {
        "images": 30,
        "size": 64,
        "decoding": {"max_new_tokens": 6},
        "overrides": overrides,
        "vgg_weights": "",
        "clip": {"image_tower": "captionkit:tiny-clip", "epochs": 1, "width": 32, "layers": 1, "batch_size": 16},
    }
    config_file = tmp_path / "demo.yaml"
    config_file.write_text(yaml.safe_dump(config))
    args = ["demo", "--out", str(out), "--config", str(config_file)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "metrics.json").read_text())
    assert set(results["models"]) == set(rows)
    for scores in [*results["models"].values(), results["baselines"]["blind"]]:
        assert {"Bleu_4", "CIDEr", "ROUGE_L", "object_f1"} <= set(scores)
    assert "| demo-clipcap-mlp |" in printed and "baseline: blind" in printed
    assert (out / "report.html").is_file()
    assert (out / "gpt2" / "config.json").is_file()

    markers = {p.name: p.stat().st_mtime_ns for p in (out / ".steps").iterdir()}
    # a user evaluates a demo model on other data: the demo's own results stay, its report shows only them
    other = write_synthetic_dataset(tmp_path / "other", images=12, seed=3, size=64)
    model = out / "demo-show-tell-merge" / "model"
    assert main(["evaluate", str(model), "--dataset", str(other), "--metrics", "fast", "--tokenizer", "python"]) == 0
    assert main(args) == 0  # everything done before: reused
    assert {p.name: p.stat().st_mtime_ns for p in (out / ".steps").iterdir()} == markers
    assert json.loads((out / "metrics.json").read_text()) == results
    report = (out / "report.html").read_text()
    assert "different data" not in report and report.count('<tr data-run="demo-show-tell-merge"') == 1

    # a changed CLIP setting redoes the CLIP and everything built on it, and nothing else
    config["clip"]["epochs"] = 2
    config_file.write_text(yaml.safe_dump(config))
    assert main(args) == 0
    redone = {name for name, mtime in markers.items() if (out / ".steps" / name).stat().st_mtime_ns != mtime}
    assert redone == {
        "clip-pretrain.json",
        "train-demo-clipcap-mlp.json",
        "export-gpt2.json",
        "evaluate-demo-clipcap-mlp.json",
        "train-demo-clipcap-transformer.json",
        "evaluate-demo-clipcap-transformer.json",
        "train-demo-clipcap-mlp+scst.json",
        "evaluate-demo-clipcap-mlp+scst.json",
    }
    clip_log = [e for e in read_log(out / "clip") if e["event"] == "epoch"]
    assert [e["epoch"] for e in clip_log] == [1, 2]  # trained afresh, not the old CLIP reused

    # a changed preset (a new captionkit version's recipe) redoes that model and what builds on it
    markers = {p.name: p.stat().st_mtime_ns for p in (out / ".steps").iterdir()}
    changed = get_preset("demo-show-attend-tell")
    changed["train"]["epochs"] += 1
    monkeypatch.setattr(
        pipeline, "get_preset", lambda name: changed if name == "demo-show-attend-tell" else get_preset(name)
    )
    assert main(args) == 0
    redone = {name for name, mtime in markers.items() if (out / ".steps" / name).stat().st_mtime_ns != mtime}
    assert redone == {
        "train-demo-show-attend-tell.json",
        "evaluate-demo-show-attend-tell.json",
        "train-demo-show-attend-tell+scst.json",
        "evaluate-demo-show-attend-tell+scst.json",
    }


def test_a_step_reruns_when_its_key_changes_and_clears_its_outputs(tmp_path):
    steps = Steps(tmp_path)
    made = tmp_path / "made"
    runs = []

    def step():
        runs.append(made.exists())  # did an old output survive into the new run?
        made.mkdir(exist_ok=True)

    steps.run("s", step, key=1, outputs=(made,))
    steps.run("s", step, key=1, outputs=(made,))
    assert runs == [False]  # same key: reused
    steps.run("s", step, key=2, outputs=(made,))
    assert runs == [False, False]  # new key: outputs removed, then run again

    def interrupted():
        made.mkdir()  # part of the new output written, then the run stops
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        steps.run("s", interrupted, key=3, outputs=(made,))
    steps.run("s", step, key=3, outputs=(made,))  # unfinished, not stale: partial outputs kept for resuming
    assert runs == [False, False, True]
