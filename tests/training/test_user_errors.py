"""User mistakes in training and model setup end as one-line captionkit errors (no traceback), and a run that fails
before training starts leaves no sign of having started."""

import pytest
import torch
from training_toy import toy_config, write_toy_dataset

from captionkit.config import from_dict
from captionkit.errors import ConfigError, DatasetError
from captionkit.models.base import build_model_and_tokenizer
from captionkit.models.devices import resolve_device
from captionkit.models.encoders import EncoderSpec, load_encoder, parse_spec, relative_spec
from captionkit.registry import get_preset
from captionkit.training import RunConfig, train


def test_an_encoder_spec_is_parsed_once_into_its_parts():
    spec = parse_spec("vgg16-small:fc2@/w/vgg.safetensors")
    assert (spec.kind, spec.source, spec.base, spec.weights) == (
        "vgg16-small",
        "fc2@/w/vgg.safetensors",
        "fc2",
        "/w/vgg.safetensors",
    )
    assert str(spec.without_weights()) == "vgg16-small:fc2" and str(spec) == "vgg16-small:fc2@/w/vgg.safetensors"
    assert parse_spec("clip:captionkit:tiny-clip") == EncoderSpec("clip", "captionkit:tiny-clip")
    assert parse_spec("vgg16", source_required=False) == EncoderSpec("vgg16")
    assert relative_spec("vgg16:fc2@/a/run/w.safetensors", "/a/run/model") == "vgg16:fc2@../w.safetensors"


@pytest.mark.parametrize("spec", ["clip", "clip:", ":fc2"])
def test_an_encoder_spec_without_a_source_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="expected KIND:SOURCE"):
        load_encoder(spec)


def test_cuda_on_a_machine_without_it_says_so(monkeypatch, tmp_path):
    """Issue 16: `--device cuda` without CUDA reported a checkpoint architecture mismatch."""
    from captionkit.cli.processes import launch_processes
    from captionkit.inference.captioner import Captioner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for attempt in (
        lambda: resolve_device("cuda"),
        lambda: Captioner.from_dir(tmp_path, device="cuda:1"),
        lambda: launch_processes("cuda"),
    ):
        with pytest.raises(ConfigError) as error:
            attempt()
        assert str(error.value) == "CUDA is not available; devices here: cpu"
    assert resolve_device(None) == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="devices here: cpu"):
        resolve_device("tpu")


def test_features_of_the_wrong_shape_are_a_config_error():
    data = {**get_preset("tiny-show-tell-merge")["model"], "finetune_encoder": None}
    model, tokenizer = build_model_and_tokenizer(data, ["a red circle ."] * 3)
    batch = {"features": torch.zeros(2, 7), "input_ids": torch.ones(2, 3, dtype=torch.long)}
    with pytest.raises(ConfigError, match="expects"):
        model(batch)


def test_a_model_with_nothing_to_train_is_a_config_error():
    from captionkit.training.caption_job import param_groups

    model, _ = build_model_and_tokenizer(
        {**get_preset("tiny-show-tell-merge")["model"], "finetune_encoder": None}, ["a b"]
    )
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        param_groups(model, 0.0, 1e-3)


def test_a_failed_train_leaves_no_resolved_config(tmp_path):
    """Issue 16: a run directory looked started after a run that failed before training."""
    data = write_toy_dataset(tmp_path / "data")
    for path in (data / "Images").iterdir():
        path.unlink()  # no usable training image: the run fails while it sets up
    out = tmp_path / "run"
    with pytest.raises(DatasetError):
        train(from_dict(RunConfig, toy_config(data, out, epochs=1)))
    assert not (out / "resolved_config.json").exists()


def test_a_started_train_writes_its_resolved_config(toy_dataset, tmp_path):
    out = tmp_path / "run"
    train(from_dict(RunConfig, toy_config(toy_dataset, out, epochs=1)))
    assert (out / "resolved_config.json").is_file()


def test_mixed_precision_follows_the_device(monkeypatch):
    """One rule for every job: bf16 autocast on CPU too (encoder pretraining used it), fp16 only on a GPU."""
    from accelerate.state import AcceleratorState

    from captionkit.training.config import TrainConfig
    from captionkit.training.engine import make_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for asked, used in (("bf16", "bf16"), ("fp16", "no"), ("no", "no")):
        assert make_accelerator(TrainConfig(mixed_precision=asked)).mixed_precision == used
        AcceleratorState._reset_state(reset_partial_state=False)  # what the engine does after every run


def test_jobs_of_different_precisions_run_in_one_process(toy_dataset, tmp_path):
    """The engine forgets accelerate's process-wide settings after a run: a bf16 job, then an fp32 one."""
    train(from_dict(RunConfig, toy_config(toy_dataset, tmp_path / "a", epochs=1, mixed_precision="bf16")))
    train(from_dict(RunConfig, toy_config(toy_dataset, tmp_path / "b", epochs=1)))
    assert (tmp_path / "b" / "model").is_dir()
