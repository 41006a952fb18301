"""issue 16, commands that fit together: caption's --out formats, --attention's refusals, an empty folder, and
`data synth` over an existing dataset."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from PIL import Image

from captionkit.cli import main


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (40, 30), "red").save(folder / "a.jpg")
    Image.new("RGB", (30, 40), "blue").save(folder / "b.png")
    return folder


def test_out_json_is_one_array_with_the_jsonl_rows(tmp_path, tiny_model_dir, images) -> None:
    args = ["caption", str(tiny_model_dir), str(images), "--max-new-tokens", "4"]
    assert main([*args, "--out", str(tmp_path / "c.json")]) == 0
    assert main([*args, "--out", str(tmp_path / "c.jsonl")]) == 0
    assert main([*args, "--out", str(tmp_path / "c.csv")]) == 0
    array = json.loads((tmp_path / "c.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert (
        isinstance(array, list)
        and array == lines
        and [r["path"] for r in array]
        == [
            str(images / "a.jpg"),
            str(images / "b.png"),
        ]
    )
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert [r["caption"] for r in rows] == [r["caption"] for r in array]
    assert json.loads(rows[0]["decoding"]) == array[0]["decoding"]


@pytest.mark.parametrize("name", ["c.txt", "c.JSONL.bak", "captions"])
def test_out_with_another_suffix_is_refused_before_any_work(tmp_path, tiny_model_dir, images, capsys, name) -> None:
    assert main(["caption", str(tiny_model_dir), str(images), "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert ".jsonl, .json or .csv" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "extra", [["--out", "c.jsonl"], ["--batch-size", "4"], ["--keep-going"], ["--rerank", "clip"]], ids=lambda e: e[0]
)
def test_attention_refuses_what_it_would_ignore(tmp_path, tiny_model_dir, images, capsys, extra) -> None:
    png = tmp_path / "att.png"
    assert main(["caption", str(tiny_model_dir), str(images / "a.jpg"), "--attention", str(png), *extra]) == 2
    err = capsys.readouterr().err
    assert f"does not combine with {extra[0]}" in err and not png.exists()


def test_an_empty_folder_is_an_error_like_an_unmatched_glob(tmp_path, tiny_model_dir, images, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert main(["caption", str(tiny_model_dir), str(tmp_path / "empty")]) == 2
    assert "empty: the folder holds no image files" in capsys.readouterr().err
    assert main(["caption", str(tiny_model_dir), str(tmp_path / "empty" / "*.jpg")]) == 2
    assert "the pattern matches no files" in capsys.readouterr().err
    # an empty folder beside a folder with images is the same mistake
    assert main(["caption", str(tiny_model_dir), str(images), str(tmp_path / "empty")]) == 2


def test_data_synth_refuses_to_replace_a_dataset_without_force(tmp_path, capsys) -> None:
    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--images", "3", "--seed", "0", "--size", "64"]) == 0
    first = (out / "Text" / "Flickr8k.token.txt").read_text()
    assert main(["data", "synth", str(out), "--images", "4", "--seed", "1", "--size", "64"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (out / "Text" / "Flickr8k.token.txt").read_text() == first  # untouched
    assert main(["data", "synth", str(out), "--images", "4", "--seed", "1", "--size", "64", "--force"]) == 0
    assert (out / "Text" / "Flickr8k.token.txt").read_text() != first


def test_the_fast_exit_of_caption_loses_no_output(tmp_path, tiny_model_dir, images) -> None:
    """`caption` leaves the process without the interpreter's teardown (cli.console): what it printed to a pipe
    and wrote to --out must all be there, the same as from main() in this process."""
    args = ["caption", str(tiny_model_dir), str(images), "--max-new-tokens", "4"]
    assert main([*args, "--out", str(tmp_path / "here.jsonl")]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "captionkit.cli", *args, "--out", str(tmp_path / "there.jsonl")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "there.jsonl").read_text() == (tmp_path / "here.jsonl").read_text()
    printed = subprocess.run([sys.executable, "-m", "captionkit.cli", *args], capture_output=True, text=True)
    captions = [json.loads(line)["caption"] for line in (tmp_path / "here.jsonl").read_text().splitlines()]
    assert [line.split("\t")[1] for line in printed.stdout.splitlines()] == captions
    assert "captioned 2 of 2 images" in printed.stderr
