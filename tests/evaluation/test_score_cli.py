"""`captionkit score` end to end: COCO results/JSONL candidates, COCO or dataset references, errors."""

from __future__ import annotations

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
    bad.write_text(json.dumps([{"image": 1, "text": "a dog"}]))
    assert main(["score", str(bad), "--references", str(ref_path), *FAST]) == 2
    err = capsys.readouterr().err
    assert "bad.json: entry 0 is not" in err and err.count("\n") == 1


def test_caption_statistics_show_length_and_repetition():
    from captionkit.evaluation.diversity import caption_statistics

    stats = caption_statistics(["a red circle .", "a red circle .", "two blue stars ."])
    assert stats["mean_length"] == 3.0
    assert stats["distinct_1"] == 6 / 9 and stats["distinct_2"] == 4 / 6
    assert caption_statistics([]) == {"mean_length": 0.0, "distinct_1": 0.0, "distinct_2": 0.0}
