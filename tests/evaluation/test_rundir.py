"""captionkit.rundir: the one owner of the run directory's names and of how results are keyed."""

from __future__ import annotations

from captionkit import rundir


def test_dataset_identity_tells_apart_what_reads_differently(tmp_path):
    data = tmp_path / "Flickr8k"
    data.mkdir()
    plain = rundir.dataset_identity(data)
    assert plain["name"] == "Flickr8k" and plain["id"].startswith("Flickr8k-") and plain["absolute"] == str(data)
    assert rundir.dataset_identity(str(data) + "/") == plain  # one folder, one identity
    assert rundir.dataset_identity(data, "csv")["id"] != plain["id"]
    assert rundir.dataset_identity(data, options={"caption_column": "text"})["id"] != plain["id"]
    other = tmp_path / "elsewhere" / "Flickr8k"
    assert rundir.dataset_identity(other)["id"] != plain["id"]  # same name, other data
    assert rundir.dataset_identity("hf:user/captions")["absolute"] == "hf:user/captions"


def test_decoding_key_names_the_method_and_hashes_every_setting():
    greedy = rundir.decoding_key({"num_beams": 1, "max_new_tokens": 30})
    assert greedy.startswith("greedy-") and greedy != rundir.decoding_key({"num_beams": 1, "max_new_tokens": 20})
    assert rundir.decoding_key({"num_beams": 5}).startswith("beam5-")
    assert rundir.decoding_key({"do_sample": True}).startswith("sample-")
    assert rundir.decoding_key({"num_beams": 5, "rerank": {"weight": 0.5}}).startswith("beam5-rerank-")


def test_find_results_skips_results_being_written(tmp_path):
    done = rundir.results_dir(tmp_path, "test", "d-1", "greedy-1")
    partial = done.with_name(".greedy-2.tmp")
    for folder in (done, partial):
        folder.mkdir(parents=True)
        (folder / rundir.METRICS).write_text("{}")
    assert list(rundir.find_results(tmp_path)) == [done]
    assert rundir.owning_run(done) == tmp_path.resolve()


def test_results_in_another_number_format_go_beside_the_float32_ones(tmp_path):
    from captionkit.evaluation.evaluate import results_dir_for

    fp32 = results_dir_for(tmp_path / "run" / "model", tmp_path / "data", "test")
    assert (
        results_dir_for(tmp_path / "run" / "model", tmp_path / "data", "test", precision={"dtype": "float32"}) == fp32
    )
    bf16 = results_dir_for(tmp_path / "run" / "model", tmp_path / "data", "test", precision={"dtype": "bfloat16"})
    int8 = results_dir_for(tmp_path / "run" / "model", tmp_path / "data", "test", precision={"quantize": "int8"})
    assert len({fp32, bf16, int8}) == 3 and bf16.parent == fp32.parent
    assert bf16.name.startswith("greedy-bfloat16-") and int8.name.startswith("greedy-int8-")
