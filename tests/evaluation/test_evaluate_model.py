"""`evaluate_model` / `captionkit evaluate`: captions a split in batches and writes one results folder in the run,
RUN/eval/<split>/<dataset>/<decoding>/, keyed by what produced it.

A stand-in Captioner (the contract `captionkit.load(dir).caption(paths, batch_size=, progress=, **decoding)`)
keeps this test about evaluation, not about a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captionkit import rundir
from captionkit.cli import main
from captionkit.config import to_dict
from captionkit.data.formats import load_dataset
from captionkit.data.synthetic import write_synthetic_dataset
from captionkit.decoding import DecodingConfig
from captionkit.evaluation.evaluate import evaluate_model
from captionkit.evaluation.metrics import score
from captionkit.evaluation.object_f1 import load_scenes
from captionkit.inference.captioner import Captioner

FAST = "bleu,rouge,cider"


class StandInCaptioner:
    """Captions every image with its first reference (odd positions: a fixed wrong caption); records its calls."""

    def __init__(self, references: dict[str, str]) -> None:
        self.references = references
        self.calls: list[dict] = []

    def caption(self, paths, batch_size=16, progress=False, **decoding):
        self.calls.append({"n": len(paths), "batch_size": batch_size, "progress": progress, **decoding})
        return [self.references[Path(p).name] if i % 2 == 0 else "a large green star" for i, p in enumerate(paths)]


@pytest.fixture()
def run_dir(tmp_path: Path, monkeypatch):
    data = write_synthetic_dataset(tmp_path / "synth", images=30, seed=0, size=48)
    refs = {r.image_id: r.captions[0] for r in load_dataset(data).records}
    fake = StandInCaptioner(refs)
    loaded: list[str] = []
    monkeypatch.setattr(Captioner, "from_dir", lambda d, device=None, **kw: loaded.append(d) or fake)
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    return run, data, fake, loaded


def test_writes_every_eval_file_into_the_run(run_dir):
    run, data, fake, loaded = run_dir
    result = evaluate_model(
        run / "model",
        data,
        "test",
        {"num_beams": 3, "max_new_tokens": 12},
        batch_size=4,
        metrics=FAST,
        tokenizer="python",
    )
    (out,) = rundir.find_results(run)
    assert out.relative_to(run).parts[:3] == ("eval", "test", rundir.dataset_identity(data)["id"])
    assert out.name.startswith("beam3-")
    assert result.out_dir == out and loaded == [str(run / "model")]
    assert fake.calls == [
        {"n": len(result.captions), "batch_size": 4, "progress": True, "num_beams": 3, "max_new_tokens": 12}
    ]
    test_records = load_dataset(data).split("test")
    predictions = json.loads((out / "predictions.json").read_text())
    assert [p["image_id"] for p in predictions] == [r.image_id for r in test_records]
    assert {p["image_id"]: p["caption"] for p in predictions} == result.captions
    expected = score(
        {r.image_id: list(r.captions) for r in test_records},
        result.captions,
        FAST + ",object_f1",
        "python",
        scenes=load_scenes(data),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == expected.corpus and "object_f1" in metrics  # scenes.json present: object_f1 added
    assert 0 < metrics["object_f1"] < 1
    assert json.loads((out / "per_item.json").read_text()) == expected.per_item
    assert json.loads((out / "decoding.json").read_text()) == to_dict(DecodingConfig(num_beams=3, max_new_tokens=12))
    info = json.loads((out / "scoring.json").read_text())
    assert info["tokenizer"] == "ptb-python" and info["split"] == "test"
    assert info["images_scored"] == info["images_in_split"] == len(test_records)
    assert info["dataset"]["path"] == "../synth" and info["dataset"]["absolute"] == str(data.resolve())
    assert info["dataset"]["name"] == "synth" and info["dataset"]["format"] == "auto"


def test_other_data_split_or_decoding_never_replaces_earlier_results(run_dir, tmp_path, capsys):
    """Issue 16: `evaluate MODEL --dataset OTHER --split test` replaced the run's demo results in eval/test/."""
    run, data, _, _ = run_dir
    other = write_synthetic_dataset(tmp_path / "other" / "synth", images=12, seed=5, size=48)
    args = ["evaluate", str(run / "model"), "--metrics", FAST, "--tokenizer", "python"]
    assert main([*args, "--dataset", str(data)]) == 0
    (first,) = rundir.find_results(run)
    first_metrics = (first / "metrics.json").read_text()
    assert str(first) in capsys.readouterr().err  # says where it went
    assert main([*args, "--dataset", str(other)]) == 0  # same folder name "synth", other data
    err = capsys.readouterr().err
    assert main([*args, "--dataset", str(data), "--split", "dev"]) == 0
    assert main([*args, "--dataset", str(data), "--num-beams", "2"]) == 0
    found = list(rundir.find_results(run))
    assert len(found) == 4 and (first / "metrics.json").read_text() == first_metrics
    scorings = [json.loads((p / "scoring.json").read_text()) for p in found]
    assert sorted(s["images_scored"] for s in scorings) == [1, 3, 3, 3]  # the 12-image set has 1 test image
    assert {s["dataset"]["absolute"] for s in scorings} == {str(data.resolve()), str(other.resolve())}
    assert "1 other evaluation(s) kept" in err and "new results" in err
    assert main([*args, "--dataset", str(data)]) == 0  # the very same evaluation again: replaces its own folder
    assert len(list(rundir.find_results(run))) == 4
    assert "replaced the same evaluation's earlier results" in capsys.readouterr().err


def test_the_stored_dataset_path_resolves_from_anywhere(run_dir, tmp_path, monkeypatch):
    """Issue 16: the dataset path was stored relative to the directory evaluate ran in."""
    run, data, _, _ = run_dir
    monkeypatch.chdir(tmp_path)
    result = evaluate_model(Path("run") / "model", Path("synth"), "test", None, metrics="CIDEr", tokenizer="python")
    entry = json.loads((result.out_dir / "scoring.json").read_text())["dataset"]
    monkeypatch.chdir(data / "Images")
    assert Path(rundir.resolve_dataset_path(entry, run.resolve())).resolve() == data.resolve()
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "run").rename(moved / "run")
    (tmp_path / "synth").rename(moved / "synth")  # run and data moved together: the relative path still works
    assert Path(rundir.resolve_dataset_path(entry, moved / "run")).resolve() == (moved / "synth").resolve()


def test_missing_images_are_left_out_with_a_warning(run_dir, caplog):
    run, data, _, _ = run_dir
    records = load_dataset(data).split("test")
    records[0].image_path.unlink()
    result = evaluate_model(run / "model", data, "test", None, metrics="CIDEr", tokenizer="python")
    assert records[0].image_id not in result.captions and len(result.captions) == len(records) - 1
    assert "missing" in caplog.text and records[0].image_id in caplog.text


def test_bad_decoding_options_fail_before_captioning(run_dir):
    run, data, fake, _ = run_dir
    with pytest.raises(TypeError):
        evaluate_model(run / "model", data, "test", {"beams": 2}, tokenizer="python")
    assert fake.calls == []


def test_cli_writes_to_out_and_prints_scores(run_dir, tmp_path, capsys):
    run, data, fake, _ = run_dir
    other = tmp_path / "elsewhere"
    code = main(
        [
            "evaluate",
            str(run / "model"),
            "--dataset",
            str(data),
            "--split",
            "dev",
            "--out",
            str(other),
            "--metrics",
            FAST,
            "--tokenizer",
            "python",
            "--num-beams",
            "2",
            "--batch-size",
            "3",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    (written,) = rundir.find_results(other)  # --out DIR: DIR/eval/<split>/..., the layout `report DIR` reads
    assert written.relative_to(other).parts[:2] == ("eval", "dev")
    assert printed == json.loads((written / "metrics.json").read_text())
    assert fake.calls[-1]["num_beams"] == 2 and fake.calls[-1]["batch_size"] == 3
    assert json.loads((written / "decoding.json").read_text())["num_beams"] == 2
    report = tmp_path / "report.html"
    assert main(["report", str(other), "--split", "dev", "--out", str(report)]) == 0  # issue 16: it was refused
    assert '<tr data-run="elsewhere">' in report.read_text()
    assert (
        main(
            [
                "evaluate",
                str(run / "model"),
                "--dataset",
                str(data),
                "--out",
                str(run),
                "--metrics",
                FAST,
                "--tokenizer",
                "python",
            ]
        )
        == 0
    )
    (in_run,) = rundir.find_results(run)  # --out RUN_DIR -> RUN_DIR/eval/<split>/...
    assert in_run.relative_to(run).parts[:2] == ("eval", "test")


def test_spice_is_mentioned_only_when_asked_for(run_dir, capsys):
    """Issue 16: "SPICE skipped ... site-packages path" was printed by every evaluate although nobody asked."""
    run, data, _, _ = run_dir
    base = ["evaluate", str(run / "model"), "--dataset", str(data), "--tokenizer", "python"]
    assert main([*base, "--metrics", "fast"]) == 0
    assert "SPICE" not in capsys.readouterr().err
    result = evaluate_model(run / "model", data, "test", None, tokenizer="python", metrics=None)
    assert "SPICE" not in result.info["skipped"] and "SPICE" not in result.corpus
    assert main([*base, "--metrics", "cider,spice"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("SPICE skipped") == 1 or "SPICE" in json.loads(captured.out)  # asked for: said once


@pytest.mark.slow
def test_end_to_end_with_a_real_tiny_model(tmp_path, capsys):
    """A random tiny ClipCap saved as RUN_DIR/model, evaluated through the real captionkit.load, then reported."""
    from captionkit.models.base import build_model
    from captionkit.models.model_dir import save_model_dir
    from captionkit.registry import get_preset

    data = write_synthetic_dataset(tmp_path / "synth", images=20, seed=1, size=48)
    preset = get_preset("tiny-clipcap-mlp")
    model = build_model(preset["model"])
    tokenizer = type(model).build_tokenizer(model.config, [c for r in load_dataset(data).records for c in r.captions])
    run = tmp_path / "run"
    save_model_dir(run / "model", model, tokenizer, preset["encoder"])
    code = main(
        [
            "evaluate",
            str(run / "model"),
            "--dataset",
            str(data),
            "--metrics",
            FAST,
            "--tokenizer",
            "python",
            "--max-new-tokens",
            "5",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    (out,) = rundir.find_results(run)
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == len(load_dataset(data).split("test"))
    assert all(isinstance(p["caption"], str) for p in predictions)  # a random model may say nothing
    assert set(json.loads((out / "metrics.json").read_text())) == {
        "Bleu_1",
        "Bleu_2",
        "Bleu_3",
        "Bleu_4",
        "ROUGE_L",
        "CIDEr",
        "object_f1",
    }
    assert json.loads((out / "decoding.json").read_text())["max_new_tokens"] == 5
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    assert "object_f1" in (tmp_path / "report.html").read_text()
