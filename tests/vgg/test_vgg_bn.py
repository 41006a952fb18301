"""torchvision's vgg16_bn layout (its ImageNet file loads unchanged) and the demo's small BN variant."""

import pytest
import torch
from safetensors.torch import save_file

from captionkit.errors import CheckpointError
from captionkit.models.encoders import load_encoder
from captionkit.models.vgg import VARIANTS, VGG16

CONVS = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]  # torchvision's vgg16_bn: Conv2d, BatchNorm2d, ReLU (+ pool)
WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def test_vgg16_bn_has_torchvisions_state_dict_layout():
    with torch.device("meta"):
        state = VGG16(VARIANTS["vgg16-bn"]).state_dict()
    expected = {}
    for i, (conv, width) in enumerate(zip(CONVS, WIDTHS)):
        expected[f"features.{conv}.weight"] = (width, 3 if i == 0 else WIDTHS[i - 1], 3, 3)
        expected[f"features.{conv}.bias"] = (width,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            expected[f"features.{conv + 1}.{name}"] = (width,)
        expected[f"features.{conv + 1}.num_batches_tracked"] = ()
    for i, shape in ((0, (4096, 25088)), (3, (4096, 4096)), (6, (1000, 4096))):
        expected[f"classifier.{i}.weight"], expected[f"classifier.{i}.bias"] = shape, shape[:1]
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_bn_weights_without_step_counters_load_and_the_file_sizes_the_label_layer(tmp_path):
    net = VGG16(VARIANTS["vgg16-bn-small"], seed=3)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["classifier.6.weight"], state["classifier.6.bias"] = torch.zeros(7, 256), torch.zeros(7)  # 7 labels
    save_file({k: v.half() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    encoder = load_encoder(f"vgg16-bn-small:conv5_3@{tmp_path / 'w.safetensors'}")
    assert encoder.feature_shape == (36, 128)  # 6x6 grid at 96 px, 128 channels
    torch.testing.assert_close(encoder.features[1].running_var, net.features[1].running_var.half().float())
    image = torch.zeros(1, 3, 96, 96)
    assert encoder(image).shape == (1, 36, 128)
    with pytest.raises(CheckpointError, match="no published weights named 'imagenet'"):
        load_encoder("vgg16-bn-small:fc2@imagenet")


def test_set_trainable_blocks_unfreezes_batch_norms_too():
    encoder = load_encoder("vgg16-bn-small:conv5_3").set_trainable_blocks(1)
    trainable = {n.rsplit(".", 1)[0] for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"features.34", "features.35", "features.37", "features.38", "features.40", "features.41"}
