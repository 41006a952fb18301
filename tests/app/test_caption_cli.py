"""`captionkit caption`: files, folders and globs; JSONL/CSV output; unreadable files skipped and counted."""

import csv
import json

from PIL import Image

from captionkit.cli import main


def _images(folder):
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), "red").save(folder / "a.jpg")
    Image.new("RGB", (30, 40), "blue").save(folder / "sub" / "b.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_recursive_with_a_broken_file(tmp_path, tiny_model_dir, capsys):
    folder = _images(tmp_path / "imgs")
    out = tmp_path / "captions.jsonl"
    code = main(["caption", str(tiny_model_dir), str(folder), "--out", str(out), "--max-new-tokens", "5"])
    err = capsys.readouterr().err
    assert code == 1  # one image failed and --keep-going was not given
    assert "captioned 2 of 3 images, 1 failed" in err and "broken.jpg" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"].split("imgs/")[1] for r in rows] == ["a.jpg", "sub/b.png"]
    assert all(isinstance(r["caption"], str) and r["model"] == str(tiny_model_dir) for r in rows)
    assert rows[0]["decoding"]["max_new_tokens"] == 5


def test_glob_csv_and_keep_going(tmp_path, tiny_model_dir, capsys):
    folder = _images(tmp_path / "imgs")
    out = tmp_path / "captions.csv"
    code = main(
        [
            "caption",
            str(tiny_model_dir),
            str(folder / "*.jpg"),
            "--out",
            str(out),
            "--keep-going",
            "--max-new-tokens",
            "4",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a.jpg"]
    assert set(rows[0]) == {"path", "caption", "model", "decoding"}


def test_prints_path_tab_caption_and_names_a_missing_path(tmp_path, tiny_model_dir, capsys):
    folder = _images(tmp_path / "imgs")
    assert main(["caption", str(tiny_model_dir), str(folder / "a.jpg"), "--max-new-tokens", "3"]) == 0
    line = capsys.readouterr().out.rstrip("\n")
    assert line.startswith(f"{folder / 'a.jpg'}\t") and "\n" not in line
    assert main(["caption", str(tiny_model_dir), str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg: no such file or folder" in capsys.readouterr().err


def test_python_api_matches_cli(tmp_path, tiny_model_dir, capsys):
    import captionkit

    folder = _images(tmp_path / "imgs")
    captioner = captionkit.load(str(tiny_model_dir))
    [api] = captioner.caption([folder / "a.jpg"], max_new_tokens=6)
    main(["caption", str(tiny_model_dir), str(folder / "a.jpg"), "--max-new-tokens", "6"])
    assert capsys.readouterr().out.rstrip("\n").split("\t", 1)[1] == api
