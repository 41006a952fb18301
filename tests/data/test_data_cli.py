"""`captionkit data check | convert | synth` driven through `captionkit.cli.main`, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from data_helpers import write_jpeg

from captionkit.cli import main


def test_check_fixture_json(flickr8k_fixture, capsys):
    assert main(["data", "check", str(flickr8k_fixture), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images_total"] == 8091
    assert report["images_found"] == 69
    assert report["images_missing"] == 8022
    assert report["images_unreadable"] == 0
    assert report["captions"] == 40455
    assert report["splits"] == {"train": 6000, "dev": 1000, "test": 1000}
    assert report["images_in_no_split"] == 91
    assert report["bogus_keys"] == 1
    assert report["captions_per_image"] == {"5": 8091}
    assert report["duplicate_captions"] == 10
    bogus = [p for p in report["problems"] if p["kind"] == "bogus_key"]
    assert bogus[0]["file"].endswith("Text/Flickr8k.token.txt") and bogus[0]["line"] == 6731
    assert all(set(p) == {"kind", "file", "line", "detail"} for p in report["problems"])
    assert len(report["missing_examples"]) == 10


def test_check_fixture_strict_exit_code(flickr8k_fixture, capsys):
    assert main(["data", "check", str(flickr8k_fixture), "--strict", "--no-decode"]) == 1
    out = capsys.readouterr().out
    assert "8091 with captions, 69 found, 8022 missing" in out
    assert "train 6000" in out and "dev 1000" in out and "test 1000" in out
    assert "Flickr8k.token.txt:6731: bogus image key" in out
    assert "missing images (first): 1000268201_693b08cb0e.jpg" in out


def test_check_kaggle_file_agrees(flickr8k_fixture, capsys):
    assert (
        main(["data", "check", str(flickr8k_fixture / "captions.txt"), "--format", "kaggle", "--json", "--no-decode"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert (report["images_total"], report["images_found"], report["splits"]) == (
        8091,
        69,
        {"train": 6000, "dev": 1000, "test": 1000},
    )
    assert report["bogus_keys"] == 0  # the Kaggle copy dropped the bogus key


def test_check_clean_dataset_passes_strict(flickr_layout, capsys):
    root = flickr_layout()
    assert main(["data", "check", str(root), "--strict"]) == 0
    assert "problems: none" in capsys.readouterr().out


def test_check_reports_unreadable_and_missing_images(flickr_layout, capsys):
    root = flickr_layout(images=["a.jpg", "b.jpg", "c.jpg"])
    (root / "Images" / "b.jpg").write_bytes((root / "Images" / "b.jpg").read_bytes()[:100])  # truncated
    (root / "Images" / "c.jpg").write_bytes(b"")
    assert main(["data", "check", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["images_found"], report["images_missing"], report["images_unreadable"]) == (3, 1, 2)
    unreadable = {p["file"]: p["detail"] for p in report["problems"] if p["kind"] == "unreadable_image"}
    assert set(unreadable) == {str(root / "Images" / "b.jpg"), str(root / "Images" / "c.jpg")}
    assert "empty file" in unreadable[str(root / "Images" / "c.jpg")]
    assert main(["data", "check", str(root), "--strict"]) == 1


def test_check_lenient_lists_malformed_lines(flickr_layout, capsys):
    root = flickr_layout(extra_lines=["broken line without tab", "d.jpg#2\t"])
    assert main(["data", "check", str(root), "--json"]) == 0
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert [(p["kind"], p["line"]) for p in problems] == [("malformed_line", 10), ("empty_caption", 11)]


def test_unusable_dataset_is_one_line_error(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("captionkit: error: ") and "no caption dataset found" in err and err.count("\n") == 1


def test_reader_options_on_the_command_line(tmp_path, capsys):
    (tmp_path / "dataset_x.json").write_text(
        json.dumps({"images": [{"filename": "a.jpg", "split": "restval", "sentences": [{"raw": "A dog ."}]}]})
    )
    write_jpeg(tmp_path / "pics" / "a.jpg")
    assert (
        main(
            [
                "data",
                "check",
                str(tmp_path),
                "--json",
                "--option",
                "restval=null",
                "--image-dir",
                str(tmp_path / "pics"),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["images_in_no_split"] == 1 and report["images_found"] == 1
    assert main(["data", "check", str(tmp_path), "--option", "restval"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_convert_to_karpathy_and_coco(flickr_layout, tmp_path, capsys):
    root = flickr_layout()
    out = tmp_path / "out" / "dataset_small.json"
    assert main(["data", "convert", str(root), "--to", "karpathy", "--out", str(out)]) == 0
    assert "wrote 4 images, 9 captions (all splits)" in capsys.readouterr().out
    assert [i["split"] for i in json.loads(out.read_text())["images"]] == ["train", "train", "val", "test"]
    refs = tmp_path / "out" / "refs.json"
    assert main(["data", "convert", str(root), "--to", "coco", "--out", str(refs), "--split", "val"]) == 0
    data = json.loads(refs.read_text())
    assert data["images"] == [{"id": "c.jpg", "file_name": "c.jpg"}] and len(data["annotations"]) == 2


def test_synth_writes_a_dataset_data_check_accepts(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["data", "synth", str(out), "--images", "4", "--seed", "3", "--size", "64"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("wrote 4 images (train ") and line.endswith(f"20 captions to {out}")
    assert main(["data", "check", str(out), "--strict", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images_found"] == 4 and report["images_unreadable"] == 0


def test_data_layer_imports_without_torch():
    code = (
        "import sys, captionkit.data.formats, captionkit.data.check, captionkit.data.text, "
        "captionkit.data.images, captionkit.cli.data; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
