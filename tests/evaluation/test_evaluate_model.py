"""`evaluate_model` / `captionkit evaluate`: captions a split in batches and writes the run's eval/<split>/ files.

A stand-in Captioner (the contract `captionkit.load(dir).caption(paths, batch_size=, progress=, **decoding)`)
keeps this test about evaluation, not about a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    out = run / "eval" / "test"
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
    assert printed == json.loads((other / "metrics.json").read_text())
    assert fake.calls[-1]["num_beams"] == 2 and fake.calls[-1]["batch_size"] == 3
    assert json.loads((other / "decoding.json").read_text())["num_beams"] == 2
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
    assert (run / "eval" / "test" / "metrics.json").is_file()  # --out RUN_DIR -> RUN_DIR/eval/<split>


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
    out = run / "eval" / "test"
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
