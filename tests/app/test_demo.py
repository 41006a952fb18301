"""`captionkit demo` end to end on a tiny configuration: every step runs, outputs exist, a rerun reuses them."""
import json

import pytest

from captionkit.cli import main
from captionkit.demo import DEMO_MODELS

TINY_TRAIN = "[train.epochs=1, train.max_steps=2, train.batch_size=8, eval.metrics=[], eval.max_images=4]"


@pytest.mark.slow
def test_demo_runs_every_step_and_reuses_them(tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = "{" + ", ".join(f"{name}: {TINY_TRAIN}" for name in DEMO_MODELS) + "}"
    args = ["demo", "--out", str(out), "--set", "images=30", "--set", "size=64", "--set", "clip.epochs=1",
            "--set", "clip.image_size=64", "--set", "clip.width=32", "--set", "clip.layers=1",
            "--set", "clip.projection_dim=16", "--set", "clip.batch_size=16", "--set", f"overrides={overrides}",
            "--set", "decoding={max_new_tokens: 6}"]
    # the ClipCap presets read the demo CLIP's 16-d embedding
    args[-3] = args[-3].replace("demo-clipcap-mlp: [", "demo-clipcap-mlp: [model.clip_dim=16, ")
    args[-3] = args[-3].replace("demo-clipcap-transformer: [", "demo-clipcap-transformer: [model.clip_dim=16, ")
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
