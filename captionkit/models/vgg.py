"""VGG16 in torchvision's exact module layout (its ImageNet weights load unchanged) and the VGG image encoder."""
from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from captionkit.errors import CheckpointError
from captionkit.models.encoders import ImageEncoder
from captionkit.registry import UnknownNameError, register_encoder

# The file behind torchvision's VGG16_Weights.IMAGENET1K_V1; "397923af" starts its SHA-256 (check_hash verifies it).
IMAGENET_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's configuration "D": conv widths, "M" = 2x2 max-pool; five blocks of 2, 2, 3, 3, 3 convolutions.
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                       512, 512, 512, "M", 512, 512, 512, "M")
CONV5_3_END = 30  # features[:30] ends with the ReLU after conv5_3, before the last max-pool
FEATURE_KINDS = ("fc2", "conv5_3")


@dataclass(frozen=True)
class VGGVariant:
    """Sizes of one VGG16-shaped network and of its ImageNet-style preprocessing."""

    width_divisor: int = 1  # every conv width is VGG16's divided by this
    fc_width: int = 4096
    num_classes: int = 1000
    resize: int = 256  # shorter side before the centre crop
    crop: int = 224

    @property
    def channels(self) -> int:
        return 512 // self.width_divisor

    @property
    def grid(self) -> int:
        return self.crop // 16  # conv5_3 sits after four 2x2 max-pools


VARIANTS = {
    "vgg16": VGGVariant(),
    # CPU demo and tests: VGG16's 13 conv + 3 FC layout with 1/8 of the channels (8..64), the shorter side resized
    # to 112 px and centre-cropped to 112 (a square image is kept whole: no object at its edge is cut), 512-wide FC
    # layers, 100 classes: fc2 is (512,), conv5_3 is a 7x7 grid of 64 channels, i.e. (49, 64).
    "vgg16-small": VGGVariant(width_divisor=8, fc_width=512, num_classes=100, resize=112, crop=112),
}


class VGG16(nn.Module):
    """torchvision.models.vgg16 without torchvision: same modules, same state-dict keys, same forward."""

    def __init__(self, variant: VGGVariant = VARIANTS["vgg16"], seed: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out_channels = int(item) // variant.width_divisor
                layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(variant.channels * 7 * 7, variant.fc_width), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(variant.fc_width, variant.fc_width), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(variant.fc_width, variant.num_classes),
        )
        if not self.features[0].weight.is_meta:  # built on the meta device to be loaded: nothing to initialise
            self._init_weights(torch.Generator().manual_seed(seed))

    def _init_weights(self, generator: torch.Generator) -> None:
        """torchvision's scheme (Kaiming-normal fan-out convs, N(0, 0.01) linears, zero biases), seeded so two
        processes building `vgg16:fc2` get the same random network."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01, generator=generator)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised pixels -> (B, num_classes) logits."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def load_weights(net: VGG16, weights: str) -> None:
    """Load "imagenet" (torchvision's published file, downloaded once into torch's hub cache, hash checked) or a
    local state-dict file into `net`, strictly; a file that does not fit names the first mismatching key."""
    if weights == "imagenet":
        try:
            state = torch.hub.load_state_dict_from_url(IMAGENET_URL, map_location="cpu", check_hash=True)
        except (OSError, RuntimeError) as exc:  # no network, or a download whose hash does not match
            raise CheckpointError(f"could not fetch VGG16 ImageNet weights from {IMAGENET_URL} ({exc}); download the "
                                  f"file elsewhere and pass its path: vgg16:fc2@/path/to/vgg16-397923af.pth") from exc
        source = IMAGENET_URL
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CheckpointError(f"VGG weights file {path} does not exist; pass the path of a state-dict file such "
                                  f"as torchvision's vgg16-397923af.pth, or @imagenet to download it")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a torch state-dict file ({exc})") from exc
        source = str(path)
    check_state_dict(net, state, source)
    # assign=True: a network built on the meta device (no wasted random init) takes the loaded tensors as they are
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)


def check_state_dict(net: nn.Module, state: Any, source: str) -> None:
    """Raise CheckpointError naming the first key that is missing, unexpected or of the wrong shape."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: expected a state dict of tensors (keys features.N.weight, ...), "
                              f"got {type(state).__name__}")
    expected = net.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key!r} (a torchvision VGG16 state dict has "
                                  f"{len(expected)} keys, this file has {len(state)})")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{source}: {key!r} has shape {tuple(state[key].shape)}, the network expects "
                                  f"{tuple(tensor.shape)} (wrong variant or not a VGG16 file?)")
    extra = [k for k in state if k not in expected]
    if extra:
        raise CheckpointError(f"{source}: unexpected key {extra[0]!r} ({len(extra)} unexpected in all)")


@dataclass(frozen=True)
class ImageNetPreprocess:
    """torchvision's Resize(resize) + CenterCrop(crop) + ToTensor + Normalize on a PIL image, without torchvision.

    Kept a small picklable object (not a bound method of the network) so DataLoader workers get it cheaply.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image: Image.Image) -> Tensor:
        """RGB PIL image -> (3, crop, crop) float32, normalised."""
        image = image.convert("RGB")
        w, h = image.size
        # shorter side -> resize, longer side truncated as torchvision does; PIL's bilinear resize antialiases
        if w <= h:
            size = (self.resize, int(self.resize * h / w))
        else:
            size = (int(self.resize * w / h), self.resize)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
        w, h = image.size
        top, left = int(round((h - self.crop) / 2.0)), int(round((w - self.crop) / 2.0))
        image = image.crop((left, top, left + self.crop, top + self.crop))
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return pixels.sub_(mean).div_(std)


class VGGEncoder(ImageEncoder):
    """A VGG16-shaped network as an image encoder.

    feature "fc2": (B, fc_width) after the second fully connected layer and its ReLU (dropout is identity in eval
    mode). feature "conv5_3": the grid after the ReLU of conv5_3, returned as (B, L, C) with L = grid * grid in
    row-major order (L index = y * grid + x), i.e. (196, 512) for VGG16 at 224 px: the layout attention models
    expect. Frozen by `load_encoder`; `set_trainable_blocks(n)` unfreezes the top for end-to-end fine-tuning.
    """

    def __init__(self, net: VGG16, feature: str, spec: str, variant: VGGVariant, weights: str | None = None) -> None:
        super().__init__()
        if feature not in FEATURE_KINDS:
            raise UnknownNameError(f"unknown VGG feature {feature!r}; valid: {', '.join(FEATURE_KINDS)}")
        self.feature = feature
        self.spec = spec
        self.variant = variant
        self.weights = weights
        self.preprocessor = ImageNetPreprocess(variant.resize, variant.crop)
        if feature == "conv5_3":
            self.features = net.features[:CONV5_3_END]
            self.feature_shape = (variant.grid * variant.grid, variant.channels)
        else:
            self.features = net.features
            self.avgpool = net.avgpool
            self.classifier = net.classifier[:5]  # through the second ReLU (and its dropout)
            self.feature_shape = (variant.fc_width,)

    def preprocess(self, image: Image.Image) -> Tensor:
        return self.preprocessor(image)

    def forward(self, pixel_values: Tensor) -> Tensor:
        x = self.features(pixel_values)  # (B, C, grid, grid) for conv5_3
        if self.feature == "conv5_3":
            return x.flatten(2).transpose(1, 2).contiguous()  # (B, L, C)
        return self.classifier(torch.flatten(self.avgpool(x), 1))  # (B, fc_width)

    def conv_blocks(self) -> list[list[nn.Conv2d]]:
        """The convolutions of the five blocks, bottom to top (a block ends at a max-pool)."""
        blocks: list[list[nn.Conv2d]] = [[]]
        for m in self.features:
            if isinstance(m, nn.MaxPool2d):
                blocks.append([])
            elif isinstance(m, nn.Conv2d):
                blocks[-1].append(m)
        return [b for b in blocks if b]

    def set_trainable_blocks(self, n: int) -> "VGGEncoder":
        """Freeze everything, then enable gradients for the last `n` conv blocks (0-5) and, for fc2 and n > 0,
        the two FC layers. The caller's .train()/.eval() decides dropout in the FC layers."""
        blocks = self.conv_blocks()
        if not 0 <= n <= len(blocks):
            raise ValueError(f"trainable VGG blocks must be 0..{len(blocks)}, got {n}")
        self.requires_grad_(False)
        for block in blocks[len(blocks) - n:]:
            for conv in block:
                conv.requires_grad_(True)
        if n > 0 and self.feature == "fc2":
            self.classifier.requires_grad_(True)
        return self

    def describe(self) -> dict[str, Any]:
        layout = ("(L, C): L = grid positions in row-major order (y * grid + x), C = channels"
                  if self.feature == "conv5_3" else "(D,): fc2 activations after ReLU")
        return {
            **super().describe(),
            "feature": self.feature,
            "layout": layout,
            "weights": self.weights or "random (torchvision init, seed 0)",
            "preprocessing": {"resize_shorter_side": self.preprocessor.resize, "interpolation": "bilinear (PIL)",
                              "center_crop": self.preprocessor.crop, "mean": list(self.preprocessor.mean),
                              "std": list(self.preprocessor.std)},
            "variant": asdict(self.variant),
        }


def build_vgg_encoder(kind: str, source: str) -> VGGEncoder:
    """`source` = FEATURE[@WEIGHTS], WEIGHTS = "imagenet" or a state-dict path; no @ = random init with seed 0."""
    feature, _, weights = source.partition("@")
    if feature not in FEATURE_KINDS:
        raise UnknownNameError(f"unknown {kind} feature {feature!r} in spec {kind}:{source}; valid: "
                               f"{', '.join(f'{kind}:{f}' for f in FEATURE_KINDS)} (optionally @imagenet or @PATH)")
    variant = VARIANTS[kind]
    if weights == "imagenet" and kind != "vgg16":
        raise CheckpointError(f"{kind} has no published weights; use {kind}:{feature} (random) or @PATH")
    if weights:
        with torch.device("meta"):  # shapes only: every tensor comes from the weights file
            net = VGG16(variant)
        load_weights(net, weights)
    else:
        net = VGG16(variant, seed=0)
    return VGGEncoder(net, feature, f"{kind}:{source}", variant, weights or None)


@register_encoder("vgg16")
def vgg16_encoder(source: str) -> VGGEncoder:
    """`vgg16:fc2`, `vgg16:conv5_3`, `vgg16:fc2@imagenet`, `vgg16:conv5_3@/path/to/vgg16-397923af.pth`."""
    return build_vgg_encoder("vgg16", source)


@register_encoder("vgg16-small")
def vgg16_small_encoder(source: str) -> VGGEncoder:
    """`vgg16-small:fc2` (512,) and `vgg16-small:conv5_3` (49, 64) at 112 px: the CPU demo's end-to-end encoder."""
    return build_vgg_encoder("vgg16-small", source)
