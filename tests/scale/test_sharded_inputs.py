"""WebDataset shards and parquet files through every command that takes a dataset: `data check` counts, `features
extract`, `train` (a features model and an end-to-end pixel model), `evaluate`; Hugging Face datasets offline."""

import json

import pytest
from scale_helpers import append_corrupt_member, truncate

from captionkit import rundir
from captionkit.cli import main
from captionkit.data.features import FeatureCache
from captionkit.data.formats import load_dataset


def test_data_check_counts_webdataset_shards_with_corrupt_members(wds_dir, capsys):
    append_corrupt_member(wds_dir / "00001.tar")  # a member that is not a JPEG
    truncate(wds_dir / "00003.tar")  # a shard cut short: its first samples are still used
    pattern = str(wds_dir / "{00000..00003}.tar")
    assert main(["data", "check", pattern, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "webdataset" and report["shards"] == 4 and report["corrupt_shards"] == 1
    kept = report["images_total"]
    assert 9 < kept < 13  # 9 intact + the corrupt member + what survived of the cut shard
    assert report["images_found"] == kept and report["images_unreadable"] == 1
    assert (
        report["captions"] == kept
        and report["splits"]["train"] + report["splits"]["dev"] + report["splits"]["test"] == kept
    )
    kinds = {p["kind"] for p in report["problems"]}
    assert {"unreadable_image", "corrupt_shard"} <= kinds
    assert report["unreadable_examples"] == [str(wds_dir / "00001.tar") + "::zz_corrupt.jpg"]


def test_a_list_file_and_a_brace_pattern_name_the_same_shards(wds_dir, tmp_path):
    listing = tmp_path / "shards.txt"
    listing.write_text("".join(f"wds/{i:05d}.tar\n" for i in range(4)))
    a, b = load_dataset(listing), load_dataset(str(wds_dir / "{00000..00003}.tar"))
    assert a.records == b.records and len(a) == 12 and a.format == "webdataset"
    assert a.records[0].image_member == "synth_000000.jpg"


def test_missing_shard_and_unknown_column_are_one_line_errors(wds_dir, parquet_dir, capsys):
    assert main(["data", "check", str(wds_dir / "{00000..00009}.tar")]) == 2
    err = capsys.readouterr().err
    assert "6 of 10 shard(s) do not exist" in err and err.count("\n") == 1
    assert main(["data", "check", str(parquet_dir), "--option", "caption_column=alt"]) == 2
    err = capsys.readouterr().err
    assert "no caption column 'alt'" in err and "columns: key, image, captions, split" in err


def test_data_check_on_parquet_with_options(parquet_dir, capsys):
    assert (
        main(
            [
                "data",
                "check",
                str(parquet_dir),
                "--json",
                "--option",
                "caption_column=captions",
                "--option",
                "image_column=image",
                "--option",
                "split=train",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "parquet" and report["shards"] == 2 and report["images_total"] == 12
    assert report["images_unreadable"] == 0 and report["captions"] == 60 and report["splits"]["train"] == 12
    assert report["split_source"] == "option split=train (every image)"


def test_hugging_face_folder_and_offline_hub_name(parquet_dir, tmp_path, capsys):
    import datasets

    files = sorted(str(p) for p in parquet_dir.glob("*.parquet"))
    saved = tmp_path / "hf"
    datasets.Dataset.from_parquet(files).save_to_disk(str(saved))
    dataset = load_dataset(saved)
    assert dataset.format == "hf" and len(dataset) == 12
    assert dataset.records == [r for r in dataset.records if r.image_member.startswith("image[")]
    capsys.readouterr()
    assert main(["data", "check", "hf:someone/flickr8k", "--no-decode"]) == 2
    err = capsys.readouterr().err
    assert "cannot load 'someone/flickr8k' from the Hugging Face hub" in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("source,preset", [("wds_dir", "tiny-clipcap-mlp"), ("parquet_dir", "tiny-show-tell-merge")])
def test_extract_train_evaluate(source, preset, request, tmp_path, capsys):
    dataset = str(request.getfixturevalue(source))
    options = ["--option", "caption_column=captions"] if source == "parquet_dir" else []
    features = tmp_path / "features"
    if preset == "tiny-clipcap-mlp":
        assert (
            main(
                [
                    "features",
                    "extract",
                    "--dataset",
                    dataset,
                    *options,
                    "--encoder",
                    "clip:captionkit:tiny-clip",
                    "--out",
                    str(features),
                    "--workers",
                    "0",
                    "--no-progress",
                ]
            )
            == 0
        )
        assert len(FeatureCache.open(features)) == 12
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--preset",
                preset,
                "--dataset",
                dataset,
                *options,
                "--out",
                str(run),
                "--features",
                str(features),
                "--set",
                "train.max_steps=2",
                "--set",
                "train.batch_size=4",
                "--set",
                "eval.max_images=2",
                "--set",
                "eval.decoding={max_new_tokens: 4}",
            ]
        )
        == 0
    ), capsys.readouterr().err
    resolved = json.loads((run / "resolved_config.json").read_text())
    assert resolved["dataset_options"] == ({"caption_column": "captions"} if options else {})
    assert (
        main(
            [
                "evaluate",
                str(run / "model"),
                "--dataset",
                dataset,
                *options,
                "--split",
                "dev",
                "--metrics",
                "bleu",
                "--tokenizer",
                "python",
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    (results,) = rundir.find_results(run)
    assert results.relative_to(run).parts[:2] == ("eval", "dev")
    predictions = json.loads((results / "predictions.json").read_text())
    dev = load_dataset(dataset, **({"caption_column": "captions"} if options else {})).split("dev")
    assert sorted(p["image_id"] for p in predictions) == sorted(r.image_id for r in dev)
