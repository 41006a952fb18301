"""Labelled image sources for encoder pretraining: class folders, tables, the scene stream; clear errors."""

import json

import pytest
from PIL import Image

from captionkit.data.labelled import load_labelled
from captionkit.errors import ConfigError, DatasetError


def _image(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


def test_class_folders_give_one_label_per_image(tmp_path):
    _image(tmp_path / "cat" / "a.jpg")
    _image(tmp_path / "cat" / "b.png")
    _image(tmp_path / "dog" / "c.jpg")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    source = load_labelled(str(tmp_path))
    assert source.label_names == ["cat", "dog"] and len(source) == 3
    image, labels = source[2]
    assert labels == ["dog"] and image.size == (16, 16)


def test_tables_csv_and_jsonl(tmp_path):
    _image(tmp_path / "img" / "a.jpg")
    _image(tmp_path / "img" / "b.jpg")
    (tmp_path / "labels.csv").write_text("file,tags\nimg/a.jpg,red;circle\nimg/b.jpg,blue\n")
    source = load_labelled(str(tmp_path / "labels.csv"), image_column="file", labels_column="tags")
    assert source.label_names == ["blue", "circle", "red"] and source[0][1] == ["red", "circle"]
    (tmp_path / "labels.jsonl").write_text(json.dumps({"image": "img/b.jpg", "labels": ["x", "y"]}) + "\n")
    assert load_labelled(str(tmp_path / "labels.jsonl"))[0][1] == ["x", "y"]


def test_bad_sources_name_the_file_line_and_field(tmp_path):
    (tmp_path / "labels.csv").write_text("image,labels\na.jpg,\n")
    with pytest.raises(DatasetError, match=r"labels.csv:2: field 'labels' holds no label"):
        load_labelled(str(tmp_path / "labels.csv"))
    (tmp_path / "bad.jsonl").write_text('{"image": "a.jpg", "labels": ["x"]}\n{oops\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: not valid JSON"):
        load_labelled(str(tmp_path / "bad.jsonl"))
    (tmp_path / "cols.jsonl").write_text('{"path": "a.jpg", "labels": ["x"]}\n')
    with pytest.raises(DatasetError, match=r"cols.jsonl:1: needs the fields 'image' and 'labels'"):
        load_labelled(str(tmp_path / "cols.jsonl"))
    with pytest.raises(DatasetError, match="synth:SEED"):
        load_labelled("synth:abc")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images in class subfolders"):
        load_labelled(str(tmp_path / "empty"))


def test_the_stream_trains_on_the_label_groups_it_is_given(tmp_path):
    assert len(load_labelled("synth:0").label_names) == 131  # colour, shape, kind, count
    with_background = load_labelled("synth:0", groups="colour,shape,kind,count,background")
    assert len(with_background.label_names) == 134 and "black background" in with_background.label_names
    assert load_labelled("synth:0", groups="shape").label_names == ["circle", "square", "triangle", "star", "cross"]
    with pytest.raises(ConfigError, match="no group 'size'"):
        load_labelled("synth:0", groups="shape,size")
    _image(tmp_path / "cat" / "a.jpg")
    with pytest.raises(ConfigError, match="only the scene stream"):
        load_labelled(str(tmp_path), groups="shape")
