"""Writers: any dataset -> Karpathy JSON -> the same records; -> COCO references for one split."""

from __future__ import annotations

import json

import pytest

from captionkit.data.formats import load_dataset, read_dataset, write_coco_references, write_karpathy
from captionkit.data.formats.common import ProblemLog
from captionkit.data.formats.jsonfmt import read_coco
from captionkit.data.records import Record
from captionkit.errors import DatasetError


def test_fixture_round_trips_through_karpathy(fixture_token, tmp_path):
    out = write_karpathy(fixture_token.dataset, tmp_path / "out" / "dataset_flickr8k.json", dataset_name="flickr8k")
    data = json.loads(out.read_text())
    assert data["dataset"] == "flickr8k" and len(data["images"]) == 8091
    first = data["images"][0]
    assert first["filename"] == "1000268201_693b08cb0e.jpg" and first["split"] == "train"
    assert first["sentences"][0]["raw"].endswith(" .") and first["sentences"][0]["tokens"][:2] == ["a", "child"]
    assert {i["split"] for i in data["images"]} == {"train", "val", "test", None}
    back = load_dataset(out)
    assert back.format == "karpathy"
    assert back.records == fixture_token.dataset.records  # ids, image paths, captions, splits
    assert len(back.with_images()) == 69


def test_karpathy_round_trip_keeps_ids_that_are_not_file_names(tmp_path):
    records = [
        Record("391895", tmp_path / "val2014" / "COCO_val2014_000000391895.jpg", ("A man on a bike .",), "test"),
        Record("img-7", tmp_path / "pics" / "seven.png", ("Seven .", "Number seven ."), None),
        Record("007", tmp_path / "pics" / "007.jpg", ("Bond .",), "dev"),
    ]
    out = write_karpathy(records, tmp_path / "k.json")
    items = json.loads(out.read_text())["images"]
    assert items[0]["cocoid"] == 391895 and "image_id" not in items[0]
    assert items[1]["image_id"] == "img-7" and items[2]["image_id"] == "007"  # "007" is not the integer 7
    assert load_dataset(out, format="karpathy").records == records


def test_coco_references_for_a_split(fixture_token, tmp_path):
    out = write_coco_references(fixture_token.dataset, tmp_path / "refs_test.json", split="test")
    data = json.loads(out.read_text())
    assert len(data["images"]) == 1000 and len(data["annotations"]) == 5000
    assert set(data["images"][0]) == {"id", "file_name"}
    assert set(data["annotations"][0]) == {"id", "image_id", "caption"}
    assert len({a["id"] for a in data["annotations"]}) == 5000
    images_dir = fixture_token.dataset.records[0].image_path.parent
    back = read_coco(out, ProblemLog(), image_dir=images_dir, split="test").dataset
    assert back.records == fixture_token.dataset.split("test")


def test_coco_references_ids_and_reader_round_trip(tmp_path):
    records = [
        Record("9", tmp_path / "im" / "a.jpg", ("A plate .", "Food ."), "train"),
        Record("b.jpg", tmp_path / "im" / "sub" / "b.jpg", ("A cat .",), "train"),
        Record("c.jpg", tmp_path / "im" / "c.jpg", ("A car .",), "dev"),
    ]
    out = write_coco_references(records, tmp_path / "refs.json", split="train")
    data = json.loads(out.read_text())
    assert [i["id"] for i in data["images"]] == [9, "b.jpg"]
    assert [i["file_name"] for i in data["images"]] == ["a.jpg", "sub/b.jpg"]
    assert [a["image_id"] for a in data["annotations"]] == [9, 9, "b.jpg"]
    back = load_dataset(out, image_dir=tmp_path / "im", split="train")
    assert back.records == records[:2]


def test_writers_refuse_empty_output(tmp_path, fixture_token):
    with pytest.raises(DatasetError, match="nothing to write"):
        write_karpathy([], tmp_path / "x.json")
    with pytest.raises(DatasetError, match="no records in split 'dev'"):
        write_coco_references([Record("a.jpg", tmp_path / "a.jpg", ("x",), "train")], tmp_path / "y.json", split="dev")


def test_small_dataset_round_trips_through_both_writers(flickr_layout, tmp_path):
    ds = load_dataset(flickr_layout())
    back = read_dataset(write_karpathy(ds, tmp_path / "o" / "dataset_small.json"))
    assert back.dataset.records == ds.records and back.problems == []
    refs = write_coco_references(ds, tmp_path / "o" / "captions_all.json")
    again = load_dataset(refs, image_dir=ds.records[0].image_path.parent, split=None)
    assert [(r.image_id, r.captions) for r in again] == [(r.image_id, r.captions) for r in ds]
