"""`captionkit demo --pretrain-encoders`: both demo encoders pretrained and installed in fp16, loadable by name."""

import torch
from safetensors.torch import load_file

from captionkit.demo.encoders import DemoEncodersConfig, pretrain_demo_encoders
from captionkit.models import hf
from captionkit.models.encoders import load_encoder
from captionkit.training.encoder_pretrain import EncoderPretrainConfig

TINY = dict(steps=2, batch_size=2, checkpoint_every_steps=2, num_workers=0, eval_images=2)


def test_pretrained_encoders_are_installed_in_fp16_and_load_as_fp32(tmp_path):
    config = DemoEncodersConfig(
        vgg=[
            EncoderPretrainConfig(encoder="vgg16-bn-small", **TINY),
            EncoderPretrainConfig(
                encoder="vgg16-bn-small",
                data="synth:2",
                data_options={"groups": "colour,shape,kind,count,background"},
                location_weight=1.0,
                **TINY,
            ),
        ],
        clip=EncoderPretrainConfig(encoder="clip:captionkit:tiny-clip", **TINY),
    )
    installed = pretrain_demo_encoders(tmp_path / "work", config, install=tmp_path / "pretrained")
    vgg = load_file(str(installed["vgg"]))
    assert {v.dtype for k, v in vgg.items() if not k.endswith("num_batches_tracked")} == {torch.float16}
    encoder = load_encoder(f"vgg16-bn-small:fc2@{installed['vgg']}")
    assert encoder.features[0].weight.dtype == torch.float32 and encoder.feature_shape == (256,)
    second_stage = load_file(str(tmp_path / "work" / "vgg-all-labels" / "weights.safetensors"))
    torch.testing.assert_close(vgg["classifier.6.weight"].float(), second_stage["classifier.6.weight"].half().float())
    model, _, _ = hf.load_clip(str(installed["clip"]))
    trained, _, _ = hf.load_clip(str(tmp_path / "work" / "clip" / "clip"))
    assert model.visual_projection.weight.dtype == torch.float32
    torch.testing.assert_close(model.visual_projection.weight, trained.visual_projection.weight.half().float())
