"""Two fake run directories over a tiny Flickr8k-layout dataset with real JPEGs, for the report tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from captionkit import rundir

METRICS = {
    "run_a": {"Bleu_1": 0.6123456789, "Bleu_4": 0.2011111, "METEOR": 0.2222, "ROUGE_L": 0.48, "CIDEr": 0.731},
    "run_b": {"Bleu_1": 0.5999, "Bleu_4": 0.2155, "METEOR": 0.2101, "ROUGE_L": 0.4912345, "CIDEr": 0.8123},
}


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


@pytest.fixture()
def runs(tmp_path: Path, flickr8k_fixture: Path) -> tuple[list[Path], Path]:
    images = sorted((flickr8k_fixture / "Images").glob("*.jpg"))[:5]
    data = tmp_path / "tiny"
    (data / "Images").mkdir(parents=True)
    token_lines = []
    for i, img in enumerate(images):
        shutil.copy(img, data / "Images" / img.name)
        token_lines += [f"{img.name}#{n}\treference {n} of image {i} : a dog <runs> & plays" for n in range(5)]
    (data / "Text").mkdir()
    (data / "Text" / "Flickr8k.token.txt").write_text("\n".join(token_lines) + "\n")
    (data / "Text" / "Flickr_8k.testImages.txt").write_text("\n".join(p.name for p in images) + "\n")
    (data / "Text" / "Flickr_8k.trainImages.txt").write_text("")
    (data / "Text" / "Flickr_8k.devImages.txt").write_text("")
    dirs = []
    for r, (name, metrics) in enumerate(METRICS.items()):
        run = tmp_path / name
        _write(
            run / "resolved_config.json",
            {
                "model": {"type": ["clipcap", "show-tell-merge"][r]},
                "encoder": ["clip:openai/clip-vit-base-patch32", "vgg16:fc2"][r],
                "dataset": str(data),
                "dataset_format": "auto",
                "out": str(run),
            },
        )
        identity = rundir.dataset_identity(data)
        ev = rundir.results_dir(run, "test", identity["id"], "greedy-000000")
        _write(ev / "metrics.json", metrics)
        _write(
            ev / "predictions.json",
            [{"image_id": p.name, "caption": f"{name} says <b>dog</b> {i}"} for i, p in enumerate(images)],
        )
        _write(
            ev / "per_item.json",
            {p.name: {"CIDEr": (i + 1) * 0.3 + r * 0.05, "Bleu_4": 0.1 * i} for i, p in enumerate(images)},
        )
        _write(ev / "decoding.json", {"num_beams": 1 + 2 * r, "max_new_tokens": 30, "length_penalty": 1.0})
        _write(
            ev / "scoring.json",
            {
                "tokenizer": "ptb-java",
                "skipped": {"SPICE": "SPICE skipped: no jars"},
                "split": "test",
                "dataset": rundir.dataset_entry(identity, run),
            },
        )
        events = []
        for epoch in range(1, 4):
            events += [
                {"event": "step", "epoch": epoch, "step": epoch * 10 + s, "train_loss": 4.0 / epoch - s * 0.1}
                for s in range(2)
            ]
            events.append(
                {
                    "event": "epoch",
                    "epoch": epoch,
                    "step": epoch * 10 + 1,
                    "dev_loss": 3.5 / epoch + r,
                    "dev_CIDEr": 0.2 * epoch + 0.1 * r,
                    "dev_Bleu_4": 0.05 * epoch,
                }
            )
        (run / "log.jsonl").write_text("\n".join(json.dumps(e) for e in events) + '\n{"event": "step", "ep')
        dirs.append(run)
    return dirs, data
