"""Every command turns a user's mistake into one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from captionkit.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every runnable command of the parser: ("data", "check"), ("train",), ..."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix}
    found: set[tuple[str, ...]] = set()
    for name, sub in subs[0].choices.items():
        found |= commands(sub, (*prefix, name))
    return found


# One bad input per command, each a mistake a user makes: a path that is not there, a name that does not exist, a
# folder already in use, a setting that is not one. "{tmp}" is a fresh temporary folder.
BAD = {
    ("data", "check"): ["data", "check", "{tmp}/no-such-dataset"],
    ("data", "convert"): ["data", "convert", "{tmp}/no-such-dataset", "--to", "karpathy", "--out", "{tmp}/k.json"],
    ("data", "synth"): ["data", "synth", "{tmp}/used", "--images", "2"],
    ("features", "extract"): [
        "features",
        "extract",
        "--dataset",
        "{tmp}/none",
        "--encoder",
        "vgg16-small:fc2",
        "--out",
        "{tmp}/f",
    ],
    ("features", "info"): ["features", "info", "{tmp}/no-cache"],
    ("encoder", "pretrain"): [
        "encoder",
        "pretrain",
        "--encoder",
        "vgg16-small",
        "--data",
        "{tmp}/none",
        "--out",
        "{tmp}/e",
    ],
    ("clip", "pretrain"): ["clip", "pretrain", "--dataset", "{tmp}/none", "--out", "{tmp}/c"],
    ("models", "list"): ["models", "list", "--json", "--json"],  # no input to get wrong: checked for a clean run below
    ("models", "import", "clipcap"): [
        "models",
        "import",
        "clipcap",
        "{tmp}/none.pt",
        "--mapping",
        "mlp",
        "--prefix-length",
        "10",
        "--gpt2",
        "{tmp}/none",
        "--out",
        "{tmp}/m",
    ],
    ("import", "clipcap"): [
        "import",
        "clipcap",
        "{tmp}/none.pt",
        "--mapping",
        "mlp",
        "--prefix-length",
        "10",
        "--gpt2",
        "{tmp}/none",
        "--out",
        "{tmp}/m",
    ],
    ("train",): ["train", "--preset", "no-such-preset", "--dataset", "{tmp}", "--out", "{tmp}/run"],
    ("caption",): ["caption", "{tmp}/no-model", "{tmp}/used"],
    ("evaluate",): ["evaluate", "{tmp}/no-model", "--dataset", "{tmp}/used"],
    ("score",): ["score", "{tmp}/none.jsonl", "--references", "{tmp}/used"],
    ("report",): ["report", "{tmp}/no-run", "--out", "{tmp}/r.html"],
    ("serve",): ["serve", "{tmp}/no-model"],
    ("demo",): ["demo", "--out", "{tmp}/demo", "--set", "no_such_setting=1"],
}


def test_every_command_has_a_bad_input_case() -> None:
    assert commands(build_parser()) == set(BAD)


@pytest.mark.parametrize("command", sorted(BAD), ids=" ".join)
def test_a_mistake_is_one_line_and_status_2(command, tmp_path, capsys) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "a.txt").write_text("something already here\n")
    argv = [part.replace("{tmp}", str(tmp_path)) for part in BAD[command]]
    if command == ("models", "list"):
        assert main(argv) == 0  # nothing a user can get wrong; it must simply work
        return
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("captionkit: error: "), err


def test_the_installed_command_prints_no_traceback(tmp_path) -> None:
    """The real entry point (a new process, as a shell runs it), not only main()."""
    done = subprocess.run(
        [sys.executable, "-m", "captionkit.cli", "caption", str(tmp_path / "no-model"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr, done.stderr


# Mistakes found only past the arguments, in the library: a model and a dataset that exist, a wrong setting.
DEEP = [
    ["evaluate", "{model}", "--dataset", "{data}", "--split", "nosuch", "--metrics", "bleu"],
    ["evaluate", "{model}", "--dataset", "{data}", "--metrics", "nosuchmetric"],
    ["caption", "{model}", "{data}/Images/synth_000000.jpg", "--num-beams", "0"],
    ["caption", "{model}", "--dataset", "{data}", "--out", "{tmp}/caps", "--option", "nosuch=1"],
    ["caption", "{model}", "{data}/Images/synth_000000.jpg", "--out", "{tmp}/caps.txt"],
    ["caption", "{model}", "{data}/Images/synth_000000.jpg", "--attention", "{tmp}/a.png", "--keep-going"],
    ["score", "{tmp}/bad.json", "--references", "{data}"],
    ["train", "--preset", "tiny-clipcap-mlp", "--dataset", "{data}", "--out", "{tmp}/run", "--set", "train.lr=abc"],
    ["train", "--preset", "tiny-clipcap-mlp", "--dataset", "{tmp}/empty.csv", "--out", "{tmp}/run"],
    ["features", "extract", "--dataset", "{data}", "--encoder", "bogus:x", "--out", "{tmp}/f"],
    ["data", "check", "{data}", "--format", "nosuch"],
    ["data", "convert", "--dataset", "{data}", "--to", "coco", "--out", "{tmp}/x.json", "--split", "nosuch"],
    ["clip", "pretrain", "--dataset", "{data}", "--out", "{tmp}/c", "--set", "epochs=abc"],
    ["encoder", "pretrain", "--encoder", "nosuch", "--data", "synth:0", "--out", "{tmp}/e"],
    ["report", "{model}", "--out", "{tmp}/r.html"],
]


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    from captionkit.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", images=6, seed=0)


@pytest.mark.parametrize("argv", DEEP, ids=lambda argv: " ".join(argv[:2] + argv[-2:]))
def test_a_library_mistake_is_one_line_and_status_2(argv, tmp_path, tiny_model_dir, synth_data, capsys) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "empty.csv").write_text("")
    values = {"{tmp}": str(tmp_path), "{model}": str(tiny_model_dir), "{data}": str(synth_data)}
    for key, value in values.items():
        argv = [part.replace(key, value) for part in argv]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and err.startswith("captionkit: error: "), err
