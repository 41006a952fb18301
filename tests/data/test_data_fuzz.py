"""Property tests: random or damaged dataset files give a dataset or the documented DatasetError, nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import SMALL_CAPTIONS, token_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captionkit.data.formats import read_dataset
from captionkit.data.records import CaptionDataset
from captionkit.errors import DatasetError

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# (file name, format): every reader the detection can pick for a single file
TARGETS = [
    ("Flickr8k.token.txt", "auto"),
    ("results_20130124.token", "auto"),
    ("captions.txt", "kaggle"),
    ("dataset_x.json", "karpathy"),
    ("captions_train2014.json", "coco"),
    ("data.json", "auto"),
    ("t.csv", "auto"),
    ("t.tsv", "auto"),
    ("t.jsonl", "auto"),
    ("notes.txt", "auto"),
]

VALID_TOKEN = ("\n".join(token_lines(SMALL_CAPTIONS)) + "\n").encode()
VALID_KAGGLE = ("image,caption\n" + "".join(f'{i},"{c}"\n' for i, cs in SMALL_CAPTIONS.items() for c in cs)).encode()
VALID_JSONL = "".join(json.dumps({"image": i, "captions": cs}) + "\n" for i, cs in SMALL_CAPTIONS.items()).encode()
VALID_KARPATHY = json.dumps(
    {
        "images": [
            {"filename": i, "split": "train", "sentences": [{"raw": c} for c in cs]} for i, cs in SMALL_CAPTIONS.items()
        ]
    },
    indent=1,
).encode()
VALID = [
    ("Flickr8k.token.txt", "auto", VALID_TOKEN),
    ("captions.txt", "kaggle", VALID_KAGGLE),
    ("t.jsonl", "auto", VALID_JSONL),
    ("dataset_k.json", "karpathy", VALID_KARPATHY),
    ("t.csv", "auto", VALID_KAGGLE),
]


def outcome(path: Path, fmt: str, strict: bool) -> CaptionDataset | None:
    """The dataset, or None when the reader raised DatasetError; any other exception fails the test."""
    try:
        result = read_dataset(path, fmt, strict=strict)
    except DatasetError as exc:
        assert str(exc)  # a message a user can act on
        return None
    assert isinstance(result.dataset, CaptionDataset) and len(result.dataset) > 0
    for record in result.dataset:
        assert record.captions and all(c == c.strip() and c for c in record.captions)
        assert record.split in ("train", "dev", "test", None)
    return result.dataset


@FUZZ
@given(data=st.binary(max_size=400), target=st.sampled_from(TARGETS), strict=st.booleans())
def test_random_bytes_never_crash(tmp_path_factory, data, target, strict):
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / target[0]
    path.write_bytes(data)
    outcome(path, target[1], strict)


damage = st.one_of(
    st.tuples(st.just("cut"), st.integers(0, 10_000)),  # file cut off mid-line
    st.tuples(st.just("crlf"), st.just(0)),  # Windows line ends
    st.tuples(st.just("bad_utf8"), st.integers(0, 10_000)),  # a byte that is not UTF-8
    st.tuples(st.just("drop_tab_or_comma"), st.integers(0, 10_000)),  # wrong columns
    st.tuples(st.just("extra_column"), st.integers(0, 10_000)),
    st.tuples(st.just("delete_line"), st.integers(0, 10_000)),
    st.tuples(st.just("quote"), st.integers(0, 10_000)),  # a stray quote (CSV) / broken string (JSON)
)


def apply_damage(data: bytes, kind: str, at: int) -> bytes:
    at = at % (len(data) + 1)
    lines = data.split(b"\n")
    line = at % len(lines)
    if kind == "cut":
        return data[:at]
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "bad_utf8":
        return data[:at] + b"\xff\xfe" + data[at:]
    if kind == "drop_tab_or_comma":
        lines[line] = lines[line].replace(b"\t", b" ").replace(b",", b" ", 1)
    elif kind == "extra_column":
        lines[line] += b",\textra,col"
    elif kind == "delete_line":
        del lines[line]
    elif kind == "quote":
        return data[:at] + b'"' + data[at:]
    return b"\n".join(lines)


@FUZZ
@given(valid=st.sampled_from(VALID), damages=st.lists(damage, min_size=1, max_size=3), strict=st.booleans())
def test_damaged_files_give_dataset_or_dataset_error(tmp_path_factory, valid, damages, strict):
    name, fmt, data = valid
    for kind, at in damages:
        data = apply_damage(data, kind, at)
    path = tmp_path_factory.mktemp("damaged") / name
    path.write_bytes(data)
    lenient = outcome(path, fmt, strict=False)
    strict_result = outcome(path, fmt, strict=True)
    if strict_result is not None:
        assert lenient is not None and strict_result.records == lenient.records  # nothing was skipped


@FUZZ
@given(valid=st.sampled_from(VALID), line_end=st.sampled_from([b"\r\n", b"\r"]))
def test_crlf_reads_exactly_like_lf(tmp_path_factory, valid, line_end):
    name, fmt, data = valid
    directory = tmp_path_factory.mktemp("crlf")
    (directory / "lf").mkdir()
    (directory / "crlf").mkdir()
    (directory / "lf" / name).write_bytes(data)
    (directory / "crlf" / name).write_bytes(data.replace(b"\n", line_end))
    lf = read_dataset(directory / "lf" / name, fmt)
    crlf = read_dataset(directory / "crlf" / name, fmt)
    assert [(r.image_id, r.captions, r.split) for r in lf.dataset] == [
        (r.image_id, r.captions, r.split) for r in crlf.dataset
    ]


@FUZZ
@given(line=st.integers(1, sum(len(c) for c in SMALL_CAPTIONS.values())))
def test_a_cut_line_in_strict_mode_names_file_and_line(tmp_path_factory, line):
    lines = VALID_TOKEN.decode().splitlines()
    key = lines[line - 1].partition("\t")[0]
    lines[line - 1] = key  # the caption and its tab are gone
    path = tmp_path_factory.mktemp("cut") / "Flickr8k.token.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"Flickr8k\.token\.txt:{line}: expected IMAGE#N<TAB>caption"):
        read_dataset(path)
    problems = read_dataset(path, strict=False).problems
    assert [(p.kind, p.line) for p in problems if p.kind != "no_image_dir"] == [("malformed_line", line)]
