"""Every dataset reader, on the real Flickr8k files and on small files written here; format detection and errors."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from data_helpers import SMALL_CAPTIONS, SMALL_SPLITS, token_lines, write_jpeg

from captionkit.data.formats import hash_split, load_dataset, read_dataset, reader_options
from captionkit.errors import DatasetError

BOGUS = "2258277193_586949ec62.jpg.1"


def by_id(dataset):
    return {r.image_id: r for r in dataset.records}


# --- the real Flickr8k files -------------------------------------------------------------------------------------


def test_fixture_token_file(fixture_token, flickr8k_fixture):
    ds = fixture_token.dataset
    assert ds.format == "flickr8k"
    assert len(ds) == 8091
    assert all(len(r.captions) == 5 for r in ds)
    assert BOGUS not in by_id(ds)
    assert {s: len(ids) for s, ids in fixture_token.split_lists.items()} == {"train": 6000, "dev": 1000, "test": 1000}
    assert Counter(r.split for r in ds) == {"train": 6000, "dev": 1000, "test": 1000, None: 91}
    first = ds.records[0]
    assert first.image_id == "1000268201_693b08cb0e.jpg"
    assert first.image_path == flickr8k_fixture / "Images" / "1000268201_693b08cb0e.jpg"
    assert first.captions[0] == "A child in a pink dress is climbing up a set of stairs in an entry way ."
    bogus = [p for p in fixture_token.problems if p.kind == "bogus_key"]
    assert len(bogus) == 1 and bogus[0].line == 6731 and bogus[0].file.endswith("Flickr8k.token.txt")
    assert BOGUS in bogus[0].detail


def test_fixture_missing_images_stay_records(fixture_token):
    ds = fixture_token.dataset
    present = ds.with_images()
    assert len(present) == 69  # the other 8,022 are reported by `data check`, never trained on
    assert all(r.split == "train" for r in present)


def test_fixture_token_and_kaggle_paths_agree(fixture_token, fixture_kaggle):
    a, b = fixture_token.dataset, fixture_kaggle.dataset
    assert b.format == "kaggle"
    assert [r.image_id for r in a] == [r.image_id for r in b]
    assert a.records == b.records  # same ids, image paths, 5 captions in the same order, same splits
    assert fixture_kaggle.split_lists == fixture_token.split_lists
    assert "Flickr_8k.trainImages.txt" in fixture_kaggle.split_source


def test_fixture_captions_txt_detected_from_file(flickr8k_fixture, fixture_kaggle):
    ds = load_dataset(flickr8k_fixture / "captions.txt")
    assert ds.format == "kaggle" and ds.records == fixture_kaggle.dataset.records


def test_fixture_lemma_option(flickr8k_fixture, fixture_token):
    lemma = load_dataset(flickr8k_fixture, lemma=True)
    assert len(lemma) == 8091
    assert lemma.files[0].name == "Flickr8k.lemma.token.txt"
    racer = by_id(lemma)["1305564994_00513f9a5b.jpg"]
    assert "A man in street racer armor be examine the tire of another racer 's motorbike ." in racer.captions
    assert {r.image_id: r.split for r in lemma} == {r.image_id: r.split for r in fixture_token.dataset}


# --- Flickr8k layouts written here ------------------------------------------------------------------------------


def test_flickr8k_seed_layout(flickr_layout):
    root = flickr_layout()
    result = read_dataset(root)
    ds = result.dataset
    assert ds.format == "flickr8k" and ds.root == root
    assert [r.image_id for r in ds] == list(SMALL_CAPTIONS)
    assert {r.image_id: r.split for r in ds} == {"a.jpg": "train", "b.jpg": "train", "c.jpg": "dev", "d.jpg": "test"}
    assert by_id(ds)["c.jpg"].captions == ('A man rides a "red" bike .', "Cyclist # 5 on a road .")
    assert all(r.image_path == root / "Images" / r.image_id for r in ds)
    assert result.problems == []


def test_flickr8k_files_at_root_and_original_image_folder(flickr_layout):
    root = flickr_layout(text_dir="", image_dir="Flicker8k_Dataset")
    ds = load_dataset(root)
    assert len(ds.with_images()) == 4
    assert all(r.image_path.parent.name == "Flicker8k_Dataset" for r in ds)


def test_token_file_given_directly_and_crlf(flickr_layout):
    root = flickr_layout(newline="\r\n")
    direct = load_dataset(root / "Text" / "Flickr8k.token.txt")
    assert direct.format == "flickr8k"
    assert by_id(direct)["a.jpg"].captions == tuple(SMALL_CAPTIONS["a.jpg"])  # no stray \r


def test_bogus_key_and_empty_caption_are_problems_not_records(flickr_layout):
    root = flickr_layout(extra_lines=["a.jpg.1#0\tghost caption", "a.jpg.1#1\tanother", "b.jpg#2\t   "])
    result = read_dataset(root)
    assert "a.jpg.1" not in by_id(result.dataset)
    assert by_id(result.dataset)["b.jpg"].captions == tuple(SMALL_CAPTIONS["b.jpg"])
    kinds = {p.kind: p for p in result.problems}
    assert kinds["bogus_key"].line == 10 and "2 line(s)" in kinds["bogus_key"].detail
    assert kinds["empty_caption"].line == 12


def test_malformed_line_strict_raises_with_file_and_line(flickr_layout):
    root = flickr_layout(extra_lines=["this line has no tab"])
    with pytest.raises(DatasetError, match=r"Flickr8k\.token\.txt:10: expected IMAGE#N<TAB>caption"):
        load_dataset(root)
    lenient = read_dataset(root, strict=False)
    assert len(lenient.dataset) == 4
    assert [(p.kind, p.line) for p in lenient.problems] == [("malformed_line", 10)]


def test_bad_utf8_line(flickr_layout):
    root = flickr_layout()
    token = root / "Text" / "Flickr8k.token.txt"
    token.write_bytes(token.read_bytes() + b"d.jpg#2\tcaf\xe9 au lait\n")
    with pytest.raises(DatasetError, match=r":10: not UTF-8"):
        load_dataset(root)
    lenient = read_dataset(root, strict=False)
    assert [(p.kind, p.line) for p in lenient.problems] == [("bad_encoding", 10)]
    assert len(by_id(lenient.dataset)["d.jpg"].captions) == 2


def test_split_list_problems(flickr_layout):
    root = flickr_layout(splits={"train": ["a.jpg", "b.jpg", "zzz.jpg"], "dev": ["c.jpg", "a.jpg"], "test": []})
    result = read_dataset(root)
    kinds = Counter(p.kind for p in result.problems)
    assert kinds == {"split_unknown_id": 1, "split_overlap": 1}
    assert by_id(result.dataset)["a.jpg"].split == "train"  # the first list wins
    assert by_id(result.dataset)["d.jpg"].split is None


def test_no_split_files_falls_back_to_hash_split(flickr_layout):
    root = flickr_layout(splits=None)
    result = read_dataset(root)
    assert result.split_lists is None and "hash of image id" in result.split_source
    assert {r.image_id: r.split for r in result.dataset} == {i: hash_split(i, 0) for i in SMALL_CAPTIONS}


def test_missing_image_dir_is_a_problem_not_a_crash(flickr_layout):
    root = flickr_layout(images=[], image_dir="Images")
    result = read_dataset(root)
    assert "no_image_dir" in {p.kind for p in result.problems}
    assert result.dataset.with_images() == []


def test_image_dir_option(flickr_layout, tmp_path):
    root = flickr_layout()
    elsewhere = tmp_path / "elsewhere"
    ds = load_dataset(root, image_dir=elsewhere)
    assert all(r.image_path.parent == elsewhere for r in ds)


# --- Kaggle captions.txt ----------------------------------------------------------------------------------------


def write_kaggle(directory: Path, captions: dict[str, list[str]] = SMALL_CAPTIONS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "captions.txt").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "caption"])
        for image, caps in captions.items():
            writer.writerows([image, c] for c in caps)
    return directory / "captions.txt"


def test_kaggle_without_split_files_uses_documented_hash_split(tmp_path):
    path = write_kaggle(tmp_path / "kaggle")
    write_jpeg(tmp_path / "kaggle" / "Images" / "a.jpg")
    first = read_dataset(tmp_path / "kaggle")
    assert first.dataset.format == "kaggle"
    assert by_id(first.dataset)["c.jpg"].captions == tuple(SMALL_CAPTIONS["c.jpg"])  # quoted "red" kept
    assert {r.image_id: r.split for r in first.dataset} == {i: hash_split(i, 0) for i in SMALL_CAPTIONS}
    assert first.split_source == "hash of image id (seed 0, train/dev/test 0.8/0.1/0.1)"
    assert [r.image_path for r in first.dataset.with_images()] == [tmp_path / "kaggle" / "Images" / "a.jpg"]
    again = read_dataset(path, split_seed=0)
    assert again.dataset.records == first.dataset.records


def test_kaggle_with_split_files_beside_it(tmp_path):
    write_kaggle(tmp_path / "k")
    (tmp_path / "k" / "Text").mkdir()
    for split, ids in SMALL_SPLITS.items():
        (tmp_path / "k" / "Text" / f"Flickr_8k.{split}Images.txt").write_text("\n".join(ids) + "\n")
    ds = load_dataset(tmp_path / "k" / "captions.txt")
    assert {r.image_id: r.split for r in ds} == {"a.jpg": "train", "b.jpg": "train", "c.jpg": "dev", "d.jpg": "test"}


def test_kaggle_bad_header_and_wrong_columns(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text("img,text\na.jpg,hello\n")
    with pytest.raises(DatasetError, match="expected the header 'image,caption'"):
        load_dataset(path, format="kaggle")
    path.write_text("image,caption\na.jpg,A dog .\nb.jpg,x,y\n")
    with pytest.raises(DatasetError, match=r"captions.txt:3: expected 2 columns"):
        load_dataset(path)
    assert len(read_dataset(path, strict=False).dataset) == 1


def test_hash_split_is_stable_and_roughly_proportional():
    ids = [f"{i:05d}.jpg" for i in range(4000)]
    splits = [hash_split(i, seed=3) for i in ids]
    assert splits == [hash_split(i, seed=3) for i in ids]
    counts = Counter(splits)
    assert 3000 < counts["train"] < 3400 and 300 < counts["dev"] < 500 and 300 < counts["test"] < 500
    assert splits != [hash_split(i, seed=4) for i in ids]
    assert Counter(hash_split(i, 0, (0.5, 0.5, 0.0)) for i in ids)["test"] == 0
    with pytest.raises(DatasetError, match="split_fractions"):
        hash_split("a.jpg", 0, (0.5, 0.2, 0.2))


@pytest.mark.parametrize("bad", [[0.5, 0.5], ["a", "b", "c"], 0.8, [1.5, -0.25, -0.25]])
def test_bad_split_fractions_option_is_a_dataset_error(tmp_path, bad):
    write_kaggle(tmp_path)
    with pytest.raises(DatasetError, match=r"option split_fractions=.*expected three numbers"):
        load_dataset(tmp_path, split_fractions=bad)


# --- Flickr30k -------------------------------------------------------------------------------------------------


def test_flickr30k_token_file(tmp_path):
    root = tmp_path / "flickr30k"
    root.mkdir()
    captions = {
        "1000092795.jpg": ["Two young guys with shaggy hair .", "Two friends enjoy time outside ."],
        "10002456.jpg": ["Several men in hard hats are operating a giant pulley system ."],
    }
    (root / "results_20130124.token").write_text("\n".join(token_lines(captions)) + "\n")
    write_jpeg(root / "flickr30k-images" / "10002456.jpg")
    ds = load_dataset(root)
    assert ds.format == "flickr30k"
    assert by_id(ds)["1000092795.jpg"].captions == tuple(captions["1000092795.jpg"])
    assert [r.image_id for r in ds.with_images()] == ["10002456.jpg"]
    assert {r.split for r in ds} <= {"train", "dev", "test"}


# --- Karpathy JSON ---------------------------------------------------------------------------------------------


def karpathy_item(name, split, captions, **extra):
    return {
        "filename": name,
        "split": split,
        "sentences": [{"raw": c, "tokens": c.lower().split()} for c in captions],
        **extra,
    }


def test_karpathy_flickr_style(tmp_path):
    data = {
        "dataset": "flickr8k",
        "images": [
            karpathy_item("a.jpg", "train", ["A dog ."]),
            karpathy_item("b.jpg", "val", ["A cat .", "Cat ."]),
            karpathy_item("c.jpg", "test", ["A man ."]),
            karpathy_item("d.jpg", "restval", ["A bird ."]),
        ],
    }
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps(data))
    write_jpeg(tmp_path / "Flicker8k_Dataset" / "a.jpg")
    ds = load_dataset(tmp_path)
    assert ds.format == "karpathy"
    assert {r.image_id: r.split for r in ds} == {"a.jpg": "train", "b.jpg": "dev", "c.jpg": "test", "d.jpg": "train"}
    assert by_id(ds)["b.jpg"].captions == ("A cat .", "Cat .")
    assert [r.image_id for r in ds.with_images()] == ["a.jpg"]
    assert by_id(load_dataset(path, restval=None))["d.jpg"].split is None
    assert by_id(load_dataset(path, restval="dev"))["d.jpg"].split == "dev"
    with pytest.raises(DatasetError, match="restval"):
        load_dataset(path, restval="holdout")


def test_karpathy_coco_style_ids_and_filepath(tmp_path):
    data = {
        "dataset": "coco",
        "images": [
            karpathy_item(
                "COCO_val2014_000000391895.jpg", "test", ["A man riding a bike . "], filepath="val2014", cocoid=391895
            ),
            {
                "filename": "COCO_train2014_000000000009.jpg",
                "filepath": "train2014",
                "split": "train",
                "cocoid": 9,
                "sentences": [{"tokens": ["a", "plate", "of", "food"]}],
            },
        ],
    }
    path = tmp_path / "annotations" / "dataset_coco.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    ds = load_dataset(path, image_dir=tmp_path)
    record = by_id(ds)["391895"]
    assert record.image_path == tmp_path / "val2014" / "COCO_val2014_000000391895.jpg"
    assert record.captions == ("A man riding a bike .",)
    assert by_id(ds)["9"].captions == ("a plate of food",)  # tokens joined when "raw" is absent


def test_karpathy_malformed_items(tmp_path):
    path = tmp_path / "dataset_x.json"
    path.write_text(
        json.dumps(
            {
                "images": [
                    karpathy_item("a.jpg", "train", ["ok ."]),
                    {"filename": 3},
                    karpathy_item("b.jpg", "holdout", ["x"]),
                ]
            }
        )
    )
    with pytest.raises(DatasetError, match=r"images\[1\]"):
        load_dataset(path)
    lenient = read_dataset(path, strict=False)
    assert [r.image_id for r in lenient.dataset] == ["a.jpg"]
    assert [p.kind for p in lenient.problems] == ["malformed_item", "bad_split"]
    path.write_text('{"images": [\n  {"filename": "a.jpg",, }\n]}')
    with pytest.raises(DatasetError, match=r"dataset_x.json:2: not valid JSON"):
        read_dataset(path, strict=False)  # a file that does not parse is unusable even in lenient mode


# --- COCO annotations ------------------------------------------------------------------------------------------


def coco_data():
    return {
        "images": [
            {"id": 9, "file_name": "COCO_train2014_000000000009.jpg"},
            {"id": 25, "file_name": "COCO_train2014_000000000025.jpg"},
            {"id": 30, "file_name": "COCO_train2014_000000000030.jpg"},
        ],
        "annotations": [
            {"id": 1, "image_id": 9, "caption": "A plate of food ."},
            {"id": 2, "image_id": 25, "caption": "A giraffe eating ."},
            {"id": 3, "image_id": 9, "caption": "Broccoli and bread ."},
        ],
    }


def test_coco_annotations_layout(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_train2014.json").write_text(json.dumps(coco_data()))
    write_jpeg(tmp_path / "train2014" / "COCO_train2014_000000000009.jpg")
    result = read_dataset(tmp_path)
    ds = result.dataset
    assert ds.format == "coco"
    assert [r.image_id for r in ds] == ["9", "25"]
    assert by_id(ds)["9"].captions == ("A plate of food .", "Broccoli and bread .")
    assert {r.split for r in ds} == {"train"}  # from the file name
    assert [r.image_id for r in ds.with_images()] == ["9"]
    assert [p.kind for p in result.problems] == ["no_captions"]  # image 30 has no annotation
    val = load_dataset(tmp_path / "annotations" / "captions_train2014.json", split="test")
    assert {r.split for r in val} == {"test"}


def test_coco_annotation_for_unknown_image(tmp_path):
    data = coco_data()
    data["annotations"].append({"id": 4, "image_id": 77, "caption": "orphan"})
    path = tmp_path / "captions_val2014.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"annotations\[3\]: image_id 77"):
        load_dataset(path)
    assert {r.split for r in read_dataset(path, strict=False).dataset} == {"dev"}


# --- generic CSV / TSV / JSONL ---------------------------------------------------------------------------------


def test_csv_one_row_per_caption_with_split_column(tmp_path):
    (tmp_path / "captions.csv").write_text(
        'file_name,text,split\nx/a.png,A dog .,train\nx/a.png,"A dog, running .",train\nb.png,A cat .,val\n'
        "c.png,A car .,restval\n"
    )
    result = read_dataset(tmp_path)
    ds = result.dataset
    assert ds.format == "csv"
    assert by_id(ds)["x/a.png"].captions == ("A dog .", "A dog, running .")
    assert by_id(ds)["x/a.png"].image_path == tmp_path / "x" / "a.png"  # a path with a folder: relative to the table
    assert {r.image_id: r.split for r in ds} == {"x/a.png": "train", "b.png": "dev", "c.png": "train"}
    assert "column 'split'" in result.split_source


def test_tsv_with_configured_columns_and_numbered_captions(tmp_path):
    (tmp_path / "data.tsv").write_text("photo\tcaption_1\tcaption_2\nq.jpg\tA boat .\tA ship at sea .\n")
    ds = load_dataset(tmp_path / "data.tsv", image_column="photo")
    assert ds.records[0].captions == ("A boat .", "A ship at sea .")
    ds = load_dataset(tmp_path / "data.tsv", image_column="photo", caption_column="caption_2", split_fallback="none")
    assert ds.records[0].captions == ("A ship at sea .",) and ds.records[0].split is None
    with pytest.raises(DatasetError, match="no caption column 'words'; columns: photo, caption_1, caption_2"):
        load_dataset(tmp_path / "data.tsv", image_column="photo", caption_column="words")


def test_csv_cell_with_json_list_of_captions(tmp_path):
    (tmp_path / "t.csv").write_text('image,captions\nz.jpg,"[""One ."", ""Two .""]"\n')
    assert load_dataset(tmp_path / "t.csv").records[0].captions == ("One .", "Two .")


def test_jsonl_list_per_row_and_errors(tmp_path):
    write_jpeg(tmp_path / "images" / "p.jpg")
    path = tmp_path / "metadata.jsonl"
    path.write_text(
        '{"file_name": "p.jpg", "captions": ["A red square .", "Red box ."], "split": "test"}\n'
        '{"file_name": "q.jpg", "captions": "One caption ."}\n'
    )
    ds = load_dataset(tmp_path)
    assert ds.format == "jsonl"
    assert by_id(ds)["p.jpg"].captions == ("A red square .", "Red box .")
    assert by_id(ds)["p.jpg"].image_path == tmp_path / "images" / "p.jpg"
    assert by_id(ds)["q.jpg"].split is None  # a split column exists, and this row leaves it empty
    path.write_text(path.read_text() + '["not", "an", "object"]\n{"file_name": "r.jpg", "captions": 5}\n')
    with pytest.raises(DatasetError, match=r"metadata.jsonl:3: expected a JSON object"):
        load_dataset(path)
    lenient = read_dataset(path, strict=False)
    assert [(p.kind, p.line) for p in lenient.problems] == [("malformed_line", 3), ("malformed_line", 4)]


def test_table_without_image_column_names_what_it_looked_for(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match=r"cannot tell which column holds the image \(looked for image, "):
        load_dataset(tmp_path / "x.csv")


# --- detection and options -------------------------------------------------------------------------------------


def test_empty_directory_lists_what_was_looked_for(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path)
    message = str(info.value)
    for expected in ("Text/Flickr8k.token.txt", "captions.txt", "dataset_*.json", "captions_*.json", "captions.csv"):
        assert expected in message


def test_unknown_format_option_and_path(tmp_path, flickr_layout):
    root = flickr_layout()
    with pytest.raises(DatasetError, match="unknown dataset format 'flickr9k'"):
        load_dataset(root, format="flickr9k")
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['restval'\] for format 'flickr8k'; valid: "):
        load_dataset(root, restval="dev")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope")
    assert "lemma" in reader_options("flickr8k") and "restval" in reader_options("karpathy")


def test_unrecognised_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello world\n")
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        load_dataset(tmp_path / "notes.txt")
    (tmp_path / "x.json").write_text('{"foo": 1}')
    with pytest.raises(DatasetError, match="neither a Karpathy split file"):
        load_dataset(tmp_path / "x.json")


def test_several_karpathy_files_is_ambiguous(tmp_path):
    for name in ("dataset_flickr8k.json", "dataset_coco.json"):
        (tmp_path / name).write_text('{"images": []}')
    with pytest.raises(DatasetError, match="several Karpathy split files"):
        load_dataset(tmp_path)
