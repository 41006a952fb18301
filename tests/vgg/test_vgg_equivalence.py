"""Our VGG16 against torchvision's on ../shared/fixtures/vgg16: keys, shapes, pixels, conv5_3, fc2 and logits."""

from __future__ import annotations

import torch
from PIL import Image

from captionkit.models.vgg import VARIANTS, VGG16, ImageNetPreprocess, VGGEncoder


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max()).item()


def test_state_dict_keys_and_shapes_in_torchvision_order(fixture_net, torchvision_keys):
    assert [(k, list(v.shape)) for k, v in fixture_net.state_dict().items()] == torchvision_keys


def test_preprocessing_matches_torchvision(flickr8k_fixture, expected):
    image = Image.open(flickr8k_fixture / "Images" / expected["image"])
    pixels = ImageNetPreprocess()(image)[None]
    assert pixels.shape == expected["pixel_values"].shape
    assert (pixels - expected["pixel_values"]).abs().max().item() <= 1e-5


def test_logits_and_conv5_3_match_torchvision(fixture_net, expected):
    pixels = expected["pixel_values"]
    with torch.no_grad():
        assert rel_err(fixture_net(pixels), expected["logits"]) <= 1e-4
        conv = VGGEncoder(fixture_net, "conv5_3", "vgg16:conv5_3", VARIANTS["vgg16"]).eval()
        grid = conv(pixels)
    assert conv.feature_shape == (196, 512) and grid.shape == (1, 196, 512)
    want = expected["conv5_3"]  # (1, 512, 14, 14): row L = y * 14 + x of ours is want[0, :, y, x]
    assert rel_err(grid, want.flatten(2).transpose(1, 2)) <= 1e-4
    torch.testing.assert_close(grid[0, 3 * 14 + 5], want[0, :, 3, 5], rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_fc2_from_the_fixture_image_matches_torchvision(fixture_net, flickr8k_fixture, expected):
    encoder = VGGEncoder(fixture_net, "fc2", "vgg16:fc2", VARIANTS["vgg16"]).eval()
    assert encoder.feature_shape == (4096,)
    features = encoder.encode_images([Image.open(flickr8k_fixture / "Images" / expected["image"])])
    assert rel_err(features, expected["fc2"]) <= 1e-4


def test_random_init_follows_torchvision_scheme():
    net = VGG16(VARIANTS["vgg16-small"])
    conv = net.features[0]
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.3 * (2 / fan_out) ** 0.5
    assert abs(net.classifier[0].weight.std().item() - 0.01) < 0.001
    assert all(m.bias.abs().max() == 0 for m in net.modules() if hasattr(m, "bias") and m.bias is not None)
