"""`captionkit score` end to end: COCO results/JSONL candidates, COCO or dataset references, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from captionkit.cli import main
from captionkit.evaluation.metrics import score

FAST = ["--metrics", "bleu,rouge,cider", "--tokenizer", "python"]  # no JVM in these tests


@pytest.fixture()
def files(tmp_path: Path, fixture_captions):
    ids = sorted(fixture_captions)[:20]
    refs = {k: fixture_captions[k][1:] for k in ids}
    cands = {k: fixture_captions[k][0] for k in ids}
    coco_ids = {k: i + 1 for i, k in enumerate(ids)}
    annotations = {
        "images": [{"id": coco_ids[k], "file_name": k} for k in ids],
        "annotations": [
            {"image_id": coco_ids[k], "id": n, "caption": c}
            for n, (k, caps) in enumerate((k, refs[k]) for k in ids)
            for c in caps
        ],
    }
    ref_path = tmp_path / "captions_test.json"
    ref_path.write_text(json.dumps(annotations))
    cand_path = tmp_path / "results.json"
    cand_path.write_text(json.dumps([{"image_id": coco_ids[k], "caption": cands[k]} for k in ids]))
    expected = score(
        {str(coco_ids[k]): refs[k] for k in ids},
        {str(coco_ids[k]): cands[k] for k in ids},
        "bleu,rouge,cider",
        tokenizer="python",
    )
    return ref_path, cand_path, expected, coco_ids


def test_prints_corpus_scores_and_writes_per_item(files, tmp_path, capsys):
    ref_path, cand_path, expected, _ = files
    out, per_item = tmp_path / "scores.json", tmp_path / "per_item.json"
    code = main(
        ["score", str(cand_path), "--references", str(ref_path), "--out", str(out), "--per-item", str(per_item), *FAST]
    )
    captured = capsys.readouterr()
    assert code == 0
    printed = json.loads(captured.out)
    assert printed == expected.corpus
    assert list(printed) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    assert json.loads(out.read_text()) == printed
    assert json.loads(per_item.read_text()) == expected.per_item
    assert "tokenizer: ptb-python" in captured.err


def test_jsonl_candidates(files, tmp_path, capsys):
    ref_path, cand_path, expected, _ = files
    jsonl = tmp_path / "results.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in json.loads(cand_path.read_text())) + "\n")
    assert main(["score", str(jsonl), "--references", str(ref_path), *FAST]) == 0
    assert json.loads(capsys.readouterr().out) == expected.corpus


def test_an_id_in_one_file_only_is_an_error_listing_examples(files, tmp_path, capsys):
    ref_path, cand_path, _, _ = files
    rows = json.loads(cand_path.read_text())
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(rows[3:] + [{"image_id": 999, "caption": "a dog"}]))
    assert main(["score", str(partial), "--references", str(ref_path), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "captionkit: error:" in err
    assert "3 image id(s) in" in err and "e.g. 1, 2, 3" in err
    assert "1 image id(s) in" in err and "e.g. 999" in err and "--allow-missing" in err


def test_allow_missing_scores_the_common_ids_with_a_warning(files, tmp_path, capsys):
    ref_path, cand_path, _, _ = files
    rows = json.loads(cand_path.read_text())
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(rows[5:]))
    assert main(["score", str(partial), "--references", str(ref_path), "--allow-missing", *FAST]) == 0
    captured = capsys.readouterr()
    assert "warning: 5 image id(s)" in captured.err and "scoring the 15 image(s) in both" in captured.err
    assert set(json.loads(captured.out)) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}


def test_references_from_a_dataset_and_split(flickr8k_fixture, fixture_captions, tmp_path, capsys):
    test_ids = (flickr8k_fixture / "Text" / "Flickr_8k.testImages.txt").read_text().split()
    cand_path = tmp_path / "results.json"
    cand_path.write_text(json.dumps([{"image_id": k, "caption": fixture_captions[k][0]} for k in test_ids]))
    assert main(["score", str(cand_path), "--references", str(flickr8k_fixture), "--split", "test", *FAST]) == 0
    expected = score(
        {k: fixture_captions[k] for k in test_ids},
        {k: fixture_captions[k][0] for k in test_ids},
        "bleu,rouge,cider",
        tokenizer="python",
    )
    assert json.loads(capsys.readouterr().out) == expected.corpus


def test_malformed_candidates_are_one_line_errors(files, tmp_path, capsys):
    ref_path, _, _, _ = files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image": 1, "text": "a dog " * 40}]))
    assert main(["score", str(bad), "--references", str(ref_path), *FAST]) == 2
    err = capsys.readouterr().err
    assert "bad.json: entry 1 has image, text; expected COCO results" in err and err.count("\n") == 1
    assert err.endswith('({"path": ..., "caption": ...})\n')  # issue 16: the message was cut mid-string


@pytest.fixture()
def synth(tmp_path):
    from captionkit.data.formats import load_dataset
    from captionkit.data.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "synth", images=30, seed=0, size=48)
    records = load_dataset(data).split("test")
    captions = {r.image_id: r.captions[0] if i % 2 else "two red circles" for i, r in enumerate(records)}
    return data, records, captions


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_captions_output_is_scored_as_it_is(synth, tmp_path, capsys, suffix):
    """Issue 16: `caption --out caps.jsonl` writes path + caption; score wanted image_id."""
    data, records, captions = synth
    predictions = tmp_path / "predictions.json"  # what evaluate writes
    predictions.write_text(json.dumps([{"image_id": k, "caption": c} for k, c in captions.items()]))
    assert main(["score", str(predictions), "--references", str(data), *FAST]) == 0
    expected = json.loads(capsys.readouterr().out)
    caps = tmp_path / f"caps{suffix}"
    rows = [{"path": str(r.image_path), "caption": captions[r.image_id], "model": "m"} for r in records]
    if suffix == ".csv":  # the columns `caption --out caps.csv` writes
        with caps.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "caption", "model", "decoding"])
            writer.writeheader()
            writer.writerows({**r, "decoding": "{}"} for r in rows)
    else:
        caps.write_text("".join(json.dumps({**r, "decoding": {}}) + "\n" for r in rows))
    assert main(["score", str(caps), "--references", str(data), *FAST]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    moved = tmp_path / "copies"  # the same images captioned from another folder: matched by file name
    moved.mkdir()
    relative = tmp_path / "relative.jsonl"
    relative.write_text("".join(json.dumps({**r, "path": str(moved / Path(r["path"]).name)}) + "\n" for r in rows))
    assert main(["score", str(relative), "--references", str(data), *FAST]) == 0
    assert json.loads(capsys.readouterr().out) == expected


def test_object_f1_follows_the_same_rule_as_evaluate(synth, tmp_path, capsys):
    """Issue 16: `score --metrics object_f1` refused a synthetic dataset with scenes.json that evaluate uses."""
    from captionkit.evaluation.object_f1 import load_scenes

    data, records, captions = synth
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps([{"image_id": k, "caption": c} for k, c in captions.items()]))
    assert main(["score", str(predictions), "--references", str(data), "--metrics", "object_f1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = score({r.image_id: list(r.captions) for r in records}, captions, "object_f1", scenes=load_scenes(data))
    assert printed == expected.corpus == {"object_f1": expected.corpus["object_f1"]}
    assert main(["score", str(predictions), "--references", str(data), *FAST]) == 0  # added as evaluate adds it
    assert "object_f1" in json.loads(capsys.readouterr().out)


def test_caption_statistics_show_length_and_repetition():
    from captionkit.evaluation.diversity import caption_statistics

    stats = caption_statistics(["a red circle .", "a red circle .", "two blue stars ."])
    assert stats["mean_length"] == 3.0
    assert stats["distinct_1"] == 6 / 9 and stats["distinct_2"] == 4 / 6
    assert caption_statistics([]) == {"mean_length": 0.0, "distinct_1": 0.0, "distinct_2": 0.0}
