"""`encoder pretrain`: a classifier run writes an encoder the specs load, resumes exactly, refuses changed settings."""

import dataclasses

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from captionkit.cli import main
from captionkit.errors import ConfigError
from captionkit.models import hf
from captionkit.models.encoders import load_encoder
from captionkit.training import checkpoint as ckpt
from captionkit.training.encoder_pretrain import EncoderPretrainConfig, pretrain_encoder

TINY = dict(steps=4, batch_size=4, checkpoint_every_steps=2, num_workers=0, eval_images=4)


def test_vgg_pretrained_on_class_folders_loads_as_an_encoder(tmp_path, capsys):
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        for i in range(3):
            path = tmp_path / "data" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 40), colour).save(path)
    out = tmp_path / "vgg"
    args = [
        "encoder",
        "pretrain",
        "--encoder",
        "vgg16-small",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(out),
        *[f"--set={k}={v}" for k, v in TINY.items()],
    ]
    assert main(args) == 0
    state = load_file(str(out / "weights.safetensors"))
    assert state["classifier.6.weight"].shape == (2, 512)  # one output per class folder
    encoder = load_encoder(f"vgg16-small:fc2@{out / 'weights.safetensors'}")
    random_init = load_encoder("vgg16-small:fc2")
    assert not torch.equal(encoder.features[0].weight, random_init.features[0].weight)
    assert (out / "labels.json").read_text().strip() == '["blue", "red"]'
    written = (out / "weights.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # finished: reused, not trained again
    assert (out / "weights.safetensors").stat().st_mtime_ns == written


def test_a_finite_source_is_shuffled_even_when_one_epoch_covers_the_run(tmp_path):
    from captionkit.data.labelled import LabelledFiles
    from captionkit.training.encoder_pretrain import LabelVocabulary, _Positions

    source = LabelledFiles([tmp_path / f"{i}.png" for i in range(100)], [["a"]] * 100, ["a"])
    positions = _Positions(source, LabelVocabulary(["a"]), lambda image: image, 0, 8, seed=0)
    order = [positions.image_index(p) for p in range(8)]
    assert order != list(range(8)) and len(set(order)) == 8  # not the files in folder (= class) order


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    config = EncoderPretrainConfig(encoder="vgg16-small", data="synth:0", **TINY)
    whole = pretrain_encoder(tmp_path / "whole", config, progress=False)

    save = ckpt.save_checkpoint

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after the first checkpoint (step 2)

    monkeypatch.setattr(ckpt, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain_encoder(tmp_path / "cut", config, progress=False)
    monkeypatch.setattr(ckpt, "save_checkpoint", save)
    assert not (tmp_path / "cut" / "pretrain_done.json").exists()
    pretrain_encoder(tmp_path / "cut", config, progress=False)
    a, b = load_file(str(whole / "weights.safetensors")), load_file(str(tmp_path / "cut" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="lr"):
        pretrain_encoder(tmp_path / "cut", EncoderPretrainConfig(encoder="vgg16-small", data="synth:0", lr=0.1, **TINY))


def test_a_clip_image_tower_trains_and_lit_keeps_it_locked(tmp_path):
    from captionkit.data.synthetic import write_synthetic_dataset
    from captionkit.training.clip_pretrain import ClipPretrainConfig, pretrain_clip

    tower = pretrain_encoder(
        tmp_path / "tower",
        EncoderPretrainConfig(encoder="clip:captionkit:tiny-clip", data="synth:0", **TINY),
        progress=False,
    )
    before, _, _ = hf.load_clip("captionkit:tiny-clip")
    trained, _, _ = hf.load_clip(str(tower / "clip"))
    assert not torch.equal(
        before.vision_model.embeddings.patch_embedding.weight, trained.vision_model.embeddings.patch_embedding.weight
    )
    assert torch.equal(
        before.text_model.embeddings.token_embedding.weight, trained.text_model.embeddings.token_embedding.weight
    )  # the text tower got no gradient

    data = write_synthetic_dataset(tmp_path / "data", images=24, seed=0, size=64)
    lit = pretrain_clip(
        data,
        tmp_path / "lit",
        ClipPretrainConfig(image_tower=str(tower / "clip"), epochs=2, width=32, layers=1, batch_size=8, warmup_steps=1),
        progress=False,
    )
    aligned, _, tokenizer = hf.load_clip(str(lit))
    for name, tensor in trained.vision_model.state_dict().items():
        assert torch.equal(tensor, aligned.vision_model.state_dict()[name]), name
    assert torch.equal(trained.visual_projection.weight, aligned.visual_projection.weight)
    assert tokenizer is not None and aligned.config.projection_dim == trained.config.projection_dim
    # the encoder ClipCap reads gives exactly the locked tower's embedding
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    a = load_encoder(f"clip:{tower / 'clip'}").encode_images([image])
    b = load_encoder(f"clip:{lit}").encode_images([image])
    torch.testing.assert_close(a, b)


def test_label_groups_weigh_equally_and_the_curriculum_starts_with_its_groups(tmp_path):
    from captionkit.training.pretrain_objectives import grouped_bce

    logits, targets = torch.zeros(2, 4), torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    groups = torch.tensor([0, 1, 1, 1])  # one label against three: each group is half the loss
    per_label = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(0)
    torch.testing.assert_close(grouped_bce(logits, targets, groups), (per_label[0] + per_label[1:].mean()) / 2)

    config = EncoderPretrainConfig(encoder="vgg16-small", data="synth:0", first_groups=["shape"], first_steps=2, **TINY)
    out = pretrain_encoder(tmp_path / "curriculum", config, progress=False)
    assert (out / "weights.safetensors").is_file()
    with pytest.raises(ConfigError, match="label groups are"):
        pretrain_encoder(
            tmp_path / "bad",
            EncoderPretrainConfig(encoder="vgg16-small", data="synth:0", first_groups=["size"], first_steps=2, **TINY),
        )


def test_a_second_stage_starts_from_the_first_stage_weights(tmp_path):
    first = pretrain_encoder(
        tmp_path / "first", EncoderPretrainConfig(encoder="vgg16-small", data="synth:0", **TINY), progress=False
    )
    weights = first / "weights.safetensors"
    # a vanishing lr: nothing moves, so the second stage's output is what it started from
    still = EncoderPretrainConfig(encoder="vgg16-small", data="synth:2", init_from=str(weights), **{**TINY, "steps": 2})
    second = pretrain_encoder(tmp_path / "second", dataclasses.replace(still, lr=1e-12), progress=False)
    before, after = load_file(str(weights)), load_file(str(second / "weights.safetensors"))
    for k in before:
        torch.testing.assert_close(before[k], after[k], atol=1e-6, rtol=0)
    fresh = pretrain_encoder(
        tmp_path / "fresh",
        EncoderPretrainConfig(encoder="vgg16-small", data="synth:2", lr=1e-12, **TINY),
        progress=False,
    )
    assert not torch.equal(
        load_file(str(fresh / "weights.safetensors"))["features.0.weight"], before["features.0.weight"]
    )
    with pytest.raises(ConfigError, match="no such weights file"):
        pretrain_encoder(tmp_path / "bad", dataclasses.replace(still, init_from=str(tmp_path / "none.safetensors")))


def test_a_location_stage_learns_coverage_on_the_grid_and_writes_a_plain_vgg(tmp_path):
    from captionkit.training.encoder_pretrain import EncoderPretrainJob, build_classifier

    # the job feeds coverage targets and the objective adds their loss to the label loss
    config = EncoderPretrainConfig(encoder="vgg16-small", data="synth:0", location_weight=2.0, **TINY)
    job = EncoderPretrainJob(config, tmp_path / "unused")
    job.setup(None, None)
    job.model.eval()  # no dropout: two forward passes agree
    positions = job.train_data[0]
    assert positions[0]["coverage"].shape == (11, 14, 14)  # vgg16-small crops 112 px: 14x14 cells of 8 px
    batch = torch.utils.data.default_collate([positions[0], positions[1]])
    loss, stats = job.objective.loss(job.model, job.model, batch)
    label_only, _ = job.objective._label_loss(job.model(batch["features"])[0].float(), batch["targets"])
    torch.testing.assert_close(loss, label_only + 2.0 * stats["location_loss"])

    out = pretrain_encoder(tmp_path / "located", config, progress=False)
    state = load_file(str(out / "weights.safetensors"))
    assert not any(k.startswith("coverage") or k.startswith("net.") for k in state)  # the head is dropped
    load_encoder(f"vgg16-small:conv4_3@{out / 'weights.safetensors'}")
    plain = build_classifier("vgg16-small", 3)
    assert plain.net is plain.vgg  # no location loss: the plain classifier
    with pytest.raises(ConfigError, match="only a VGG kind on the scene stream"):
        pretrain_encoder(tmp_path / "bad", dataclasses.replace(config, encoder="clip:captionkit:tiny-clip"))


def test_a_stage_with_more_labels_keeps_the_earlier_labels_rows(tmp_path):
    first = pretrain_encoder(
        tmp_path / "first", EncoderPretrainConfig(encoder="vgg16-small", data="synth:0", **TINY), progress=False
    )
    more = EncoderPretrainConfig(
        encoder="vgg16-small",
        data="synth:2",
        data_options={"groups": "colour,shape,kind,count,background"},
        init_from=str(first / "weights.safetensors"),
        lr=1e-12,
        **{**TINY, "steps": 2},
    )
    second = pretrain_encoder(tmp_path / "second", more, progress=False)
    before, after = load_file(str(first / "weights.safetensors")), load_file(str(second / "weights.safetensors"))
    assert after["classifier.6.weight"].shape[0] == before["classifier.6.weight"].shape[0] + 3
    for key in ("classifier.6.weight", "classifier.6.bias"):  # the 131 shared labels come first, in the same order
        torch.testing.assert_close(after[key][:131], before[key], atol=1e-6, rtol=0)
    torch.testing.assert_close(after["features.0.weight"], before["features.0.weight"], atol=1e-6, rtol=0)
