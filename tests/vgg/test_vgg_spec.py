"""VGG encoder specs: feature kinds, seeded random init, weights from a file or torchvision's URL, trainable blocks."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from PIL import Image

from captionkit.errors import CheckpointError, UnknownNameError
from captionkit.models import vgg
from captionkit.models.encoders import load_encoder
from captionkit.models.vgg import VARIANTS, VGG16


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.new("RGB", (150, 100), (200, 40, 90))


def test_small_variant_feature_kinds(image):
    fc2 = load_encoder("vgg16-small:fc2")
    conv = load_encoder("vgg16-small:conv5_3")
    assert fc2.feature_shape == (512,) and conv.feature_shape == (49, 64)
    assert fc2.preprocess(image).shape == (3, 112, 112)
    assert fc2.encode_images([image]).shape == (1, 512)
    assert conv.encode_images([image, image]).shape == (2, 49, 64)
    assert not any(p.requires_grad for p in fc2.parameters()) and not fc2.training
    info = conv.describe()
    assert info["spec"] == "vgg16-small:conv5_3" and info["feature_shape"] == [49, 64]
    assert info["preprocessing"]["center_crop"] == 112 and "row-major" in info["layout"]


def test_conv4_3_is_the_grid_before_the_fourth_pool_and_feeds_conv5_3(image):
    """conv4_3: a grid twice as fine as conv5_3 from the same network; conv5_3 is block 5 run on top of it."""
    conv4 = load_encoder("vgg16-small:conv4_3")
    conv5 = load_encoder("vgg16-small:conv5_3")
    assert conv4.feature_shape == (196, 64) and "row-major" in conv4.describe()["layout"]
    pixels = conv4.preprocess(image)[None]
    with torch.no_grad():
        grid = conv4(pixels)  # (1, 196, 64): rows of a 14 x 14 grid
        as_map = grid.transpose(1, 2).reshape(1, 64, 14, 14)
        on_top = conv5.features[len(conv4.features) :](as_map)  # the max-pool and block 5
    torch.testing.assert_close(on_top.flatten(2).transpose(1, 2), conv5(pixels))
    assert len(conv4.conv_blocks()) == 4


def test_random_init_is_seeded_not_global(image):
    torch.manual_seed(1)
    a = load_encoder("vgg16-small:fc2").encode_images([image])
    torch.manual_seed(2)
    b = load_encoder("vgg16-small:fc2").encode_images([image])
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_feature_lists_valid_ones():
    with pytest.raises(UnknownNameError, match=r"'fc7'.*vgg16:fc2, vgg16:conv5_3"):
        load_encoder("vgg16:fc7")


def test_weights_from_a_local_file(tmp_path, image):
    trained = VGG16(VARIANTS["vgg16-small"], seed=123)
    path = tmp_path / "small.pth"
    torch.save(trained.state_dict(), path)
    encoder = load_encoder(f"vgg16-small:fc2@{path}")
    assert encoder.spec == f"vgg16-small:fc2@{path}" and encoder.describe()["weights"] == str(path)
    torch.testing.assert_close(encoder.features[0].weight, trained.features[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(encoder.classifier[3].weight, trained.classifier[3].weight, rtol=0, atol=0)
    assert not torch.equal(encoder.features[0].weight, VGG16(VARIANTS["vgg16-small"]).features[0].weight)


def test_wrong_weight_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_encoder(f"vgg16-small:fc2@{tmp_path / 'absent.pth'}")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(CheckpointError, match="notes.txt: not a torch state-dict file"):
        load_encoder(f"vgg16-small:fc2@{tmp_path / 'notes.txt'}")
    state = VGG16(VARIANTS["vgg16-small"]).state_dict()
    state["features.5.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(
        CheckpointError,
        match=r"'features.5.weight' has shape \(3, 3, 3, 3\), the network expects "
        r"\(16, 8, 3, 3\)",
    ):
        load_encoder(f"vgg16-small:fc2@{tmp_path / 'shape.pth'}")
    state = VGG16(VARIANTS["vgg16-small"]).state_dict()
    state = {("module." + k): v for k, v in state.items()}
    torch.save(state, tmp_path / "prefixed.pth")
    with pytest.raises(CheckpointError, match="missing key 'features.0.weight'"):
        load_encoder(f"vgg16-small:fc2@{tmp_path / 'prefixed.pth'}")
    with pytest.raises(CheckpointError, match="no published weights named .imagenet."):
        load_encoder("vgg16-small:fc2@imagenet")


def test_imagenet_weights_come_from_torchvisions_url_hash_checked(monkeypatch, fixture_state, fixture_net, expected):
    calls = []

    def fake_download(url, **kwargs):
        calls.append((url, kwargs))
        return fixture_state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    encoder = load_encoder("vgg16:fc2@imagenet")
    assert calls == [
        ("https://download.pytorch.org/models/vgg16-397923af.pth", {"map_location": "cpu", "check_hash": True})
    ]
    assert encoder.spec == "vgg16:fc2@imagenet"
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(expected["pixel_values"]),
            expected["fc2"],
            rtol=1e-4,
            atol=1e-4 * expected["fc2"].abs().max().item(),
        )


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    def offline(url, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError, match=r"could not fetch .*vgg16-397923af.pth.*@/path/to/vgg16-397923af.pth"):
        vgg.load_weights(VGG16(VARIANTS["vgg16-small"]), "imagenet")


def trainable(encoder) -> set[str]:
    return {name.rsplit(".", 1)[0] for name, p in encoder.named_parameters() if p.requires_grad}


def test_set_trainable_blocks_unfreezes_the_top(image):
    fc2 = load_encoder("vgg16-small:fc2")
    assert [len(b) for b in fc2.conv_blocks()] == [2, 2, 3, 3, 3]
    assert trainable(fc2.set_trainable_blocks(1)) == {
        "features.24",
        "features.26",
        "features.28",
        "classifier.0",
        "classifier.3",
    }
    assert len(trainable(fc2.set_trainable_blocks(2))) == 8
    assert trainable(fc2.set_trainable_blocks(0)) == set()
    conv = load_encoder("vgg16-small:conv5_3").set_trainable_blocks(1)
    assert trainable(conv) == {"features.24", "features.26", "features.28"}
    with pytest.raises(ValueError, match="0..5"):
        conv.set_trainable_blocks(6)
    conv.train()
    conv(conv.preprocess(image)[None]).square().mean().backward()
    assert conv.features[28].weight.grad is not None and conv.features[0].weight.grad is None
