"""One CLI grammar: the forms scripts already call keep parsing, and every command spells a thing the same way."""

from __future__ import annotations

import argparse

import pytest

from captionkit.cli import build_parser, main

# issue 14, "Scripts already call these forms": each must keep working.
SCRIPT_FORMS = [
    "data synth OUT --images 8 --seed 3",
    "data check PATH --json",
    "models list",
    "train --preset tiny-clipcap-mlp --dataset D --out R",
    "train --preset tiny-clipcap-mlp --dataset D --out R --set train.lr=1e-4 --set train.epochs=2",
    "evaluate MODEL --dataset D --split test --metrics bleu,CIDEr --out DIR",
    "caption MODEL a.jpg b.jpg",
    "caption MODEL a.jpg --out caps.jsonl",
    "caption MODEL a.jpg --attention a.png",
    "score CANDIDATES --references REFS",
    "features extract --dataset D --encoder clip:DIR --out DIR --workers 2",
    "import clipcap CKPT --mapping mlp --prefix-length 10 --prefix-dim 512 --gpt2 G --tokenizer T --out DIR",
    "demo --out R",
]

# Every command that reads a caption dataset: --dataset PATH, --format, repeatable --option KEY=VALUE.
DATASET_COMMANDS = [
    "data check",
    "data convert --to karpathy --out k.json",
    "features extract --encoder vgg16-small:fc2 --out F",
    "train --preset tiny-clipcap-mlp --out R",
    "evaluate MODEL",
    "caption MODEL --out DIR",
    "clip pretrain --out C",
]
# Long-running commands: --no-progress.
LONG_COMMANDS = [
    "data check D",
    "features extract --dataset D --encoder E --out F",
    "evaluate MODEL --dataset D",
    "caption MODEL a.jpg",
    "encoder pretrain --encoder vgg16-small --data synth:0 --out E",
    "clip pretrain --dataset D --out C",
    "train --preset tiny-clipcap-mlp --dataset D --out R",
]
DEVICE_COMMANDS = [
    "features extract --dataset D --encoder E --out F",
    "evaluate MODEL --dataset D",
    "caption MODEL x",
    "score C --references R",
    "serve M",
]


def parse(line: str) -> argparse.Namespace:
    return build_parser().parse_args(line.split())


@pytest.mark.parametrize("line", SCRIPT_FORMS)
def test_script_forms_parse(line: str) -> None:
    assert callable(parse(line).func)


@pytest.mark.parametrize("line", DATASET_COMMANDS)
def test_a_dataset_is_always_dataset_format_option(line: str) -> None:
    args = parse(f"{line} --dataset data/x.csv --format csv --option caption_column=text --option split=train")
    assert (args.dataset, args.format, args.option) == ("data/x.csv", "csv", ["caption_column=text", "split=train"])


def test_data_check_takes_the_dataset_as_path_or_flag(tmp_path, capsys) -> None:
    assert parse("data check PATH").path == "PATH" and parse("data check --dataset PATH").dataset == "PATH"
    assert main(["data", "check", str(tmp_path / "a"), "--dataset", str(tmp_path / "b")]) == 2
    assert "give the dataset once" in capsys.readouterr().err


@pytest.mark.parametrize("line", LONG_COMMANDS)
def test_long_commands_take_no_progress(line: str) -> None:
    assert parse(f"{line} --no-progress").no_progress is True
    assert parse(line).no_progress is False


@pytest.mark.parametrize("line", DEVICE_COMMANDS)
def test_one_device_default(line: str) -> None:
    """None everywhere: the library's one rule decides (cuda if available, else cpu)."""
    assert parse(line).device is None
    assert parse(f"{line} --device cuda:1").device == "cuda:1"


def test_ptb_tokenizer_has_its_own_name_and_the_old_spelling_still_works() -> None:
    for line in ("evaluate M --dataset D", "score C --references R"):
        assert parse(line).ptb_tokenizer == "auto"
        assert parse(f"{line} --ptb-tokenizer python").ptb_tokenizer == "python"
        assert parse(f"{line} --tokenizer java").ptb_tokenizer == "java"  # scripts written before the rename
    # `import clipcap --tokenizer` is the model's tokenizer, as everywhere else
    assert parse("import clipcap C --mapping mlp --prefix-length 1 --gpt2 G --tokenizer T --out O").tokenizer == "T"


def test_a_folder_of_images_is_image_dir_and_images_is_a_count() -> None:
    assert parse("score C --references R --image-dir IMGS").image_dir == "IMGS"
    assert parse("score C --references R --images IMGS").image_dir == "IMGS"  # the older spelling still works
    assert parse("data check D --image-dir IMGS").image_dir.name == "IMGS"
    assert parse("data synth OUT --images 5").images == 5


def test_models_import_clipcap_is_the_same_command_as_import_clipcap() -> None:
    old = vars(parse("import clipcap C --mapping mlp --prefix-length 10 --gpt2 G --out O"))
    new = vars(parse("models import clipcap C --mapping mlp --prefix-length 10 --gpt2 G --out O"))
    assert old["func"] is new["func"]
    assert {k: v for k, v in old.items() if k not in ("command", "verb")} == {
        k: v for k, v in new.items() if k not in ("command", "verb")
    }


def test_version(capsys) -> None:
    from captionkit.version import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"captionkit {__version__}"


def test_models_list_has_a_header_and_what_each_preset_is_for(capsys) -> None:
    import captionkit

    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PRESET", "TYPE", "MEANT", "FOR"]
    presets = captionkit.list_models()
    assert len(lines) == 1 + len(presets)
    row = next(line for line in lines if line.startswith("tiny-clipcap-mlp "))
    assert presets["tiny-clipcap-mlp"]["meant_for"] in row and " clipcap " in row


def test_json_is_one_flag(capsys) -> None:
    import json

    assert main(["models", "list", "--json"]) == 0
    assert "tiny-clipcap-mlp" in json.loads(capsys.readouterr().out)["presets"]
    for line in ("data check D", "features info F", "models list", "demo"):
        assert parse(f"{line} --json").json is True
