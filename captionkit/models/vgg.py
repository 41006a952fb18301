"""VGG16 in torchvision's exact module layout (its ImageNet weights load unchanged) and the VGG image encoder."""

from __future__ import annotations

import math
import pickle
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from captionkit.errors import CheckpointError, ConfigError, UnknownNameError
from captionkit.models.encoders import EncoderSpec, ImageEncoder
from captionkit.pretrained import PACKAGED, packaged_path
from captionkit.registry import register_encoder

# The files behind torchvision's VGG16_Weights.IMAGENET1K_V1 and VGG16_BN_Weights.IMAGENET1K_V1; the hex part of
# each name starts its SHA-256 (check_hash verifies it).
# kind -> weights name -> URL; weights shipped in the package (the demo's) are listed in captionkit/pretrained
PUBLISHED = {
    "vgg16": {"imagenet": "https://download.pytorch.org/models/vgg16-397923af.pth"},
    "vgg16-bn": {"imagenet": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"},
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's configuration "D": conv widths, "M" = 2x2 max-pool; five blocks of 2, 2, 3, 3, 3 convolutions.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)
# The grid features: name -> how many of the five max-pools come before it. conv4_3 is a grid twice as fine as
# conv5_3 (28x28 for VGG16 at 224 px; 12x12 for the demo's 96-px network, whose 6x6 conv5_3 cells are too coarse for
# attention to land on one small object: all of a word's attention on the best cell covers 0.40 of it on average).
GRID_POOLS = {"conv5_3": 4, "conv4_3": 3}
FEATURE_KINDS = ("fc2", *GRID_POOLS)


@dataclass(frozen=True)
class VGGVariant:
    """Sizes of one VGG16-shaped network and of its ImageNet-style preprocessing."""

    width_divisor: int = 1  # every conv width is VGG16's divided by this
    batch_norm: bool = False  # torchvision's vgg16_bn layout: Conv2d, BatchNorm2d, ReLU for every convolution
    dropout: float = 0.5  # of the two dropout layers in the classifier (no weights: the layout is unchanged)
    # torchvision initialises the FC layers from N(0, 0.01): at 4096 units that keeps the signal's scale, at a few
    # hundred it shrinks it ~40x per layer and a network trained from scratch does not learn (measured: the demo's
    # encoder stayed at the label priors for 700 steps); None = PyTorch's default (Kaiming-uniform) init
    fc_init_std: float | None = 0.01
    fc_width: int = 4096
    num_classes: int = 1000
    resize: int = 256  # shorter side before the centre crop
    crop: int = 224

    @property
    def channels(self) -> int:
        return 512 // self.width_divisor

    def grid(self, feature: str) -> int:
        """Cells per side of a grid feature: each 2x2 max-pool before it halves the crop."""
        return self.crop // 2 ** GRID_POOLS[feature]


VARIANTS = {
    "vgg16": VGGVariant(),
    # CPU demo and tests: VGG16's 13 conv + 3 FC layout with 1/8 of the channels (8..64), the shorter side resized
    # to 112 px and centre-cropped to 112 (a square image is kept whole: no object at its edge is cut), 512-wide FC
    # layers, 100 classes: fc2 is (512,), conv5_3 is a 7x7 grid of 64 channels, i.e. (49, 64).
    "vgg16-small": VGGVariant(width_divisor=8, fc_width=512, num_classes=100, resize=112, crop=112),
    "vgg16-bn": VGGVariant(batch_norm=True),
    # The demo's pretrained encoder (captionkit/pretrained/): vgg16_bn's layout with 1/4 of the channels (16..128),
    # 256-wide FC layers, 96 px (conv5_3 is a 6x6 grid of 128 channels, (36, 128): two cells a side for each cell of
    # the demo scenes' 3x3 grid; conv4_3 a 12x12 one), and one output per label of the demo's labelled scene stream
    # (data/scene_stream.py: 131 object labels and 3 backgrounds) instead of ImageNet's 1,000 classes. Trained on an
    # endless stream: no dropout needed.
    "vgg16-bn-small": VGGVariant(
        width_divisor=4,
        batch_norm=True,
        fc_width=256,
        num_classes=134,
        resize=96,
        crop=96,
        dropout=0.0,
        fc_init_std=None,
    ),
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
                layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
                if variant.batch_norm:
                    layers.append(nn.BatchNorm2d(out_channels))
                layers.append(nn.ReLU(inplace=True))
                in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(variant.channels * 7 * 7, variant.fc_width),
            nn.ReLU(True),
            nn.Dropout(p=variant.dropout),
            nn.Linear(variant.fc_width, variant.fc_width),
            nn.ReLU(True),
            nn.Dropout(p=variant.dropout),
            nn.Linear(variant.fc_width, variant.num_classes),
        )
        self.variant = variant
        if not self.features[0].weight.is_meta:  # built on the meta device to be loaded: nothing to initialise
            self._init_weights(torch.Generator().manual_seed(seed), variant.fc_init_std)

    def _init_weights(self, generator: torch.Generator, fc_init_std: float | None) -> None:
        """torchvision's scheme (Kaiming-normal fan-out convs, N(0, 0.01) linears, zero biases), seeded so two
        processes building `vgg16:fc2` get the same random network."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and fc_init_std is not None:
                nn.init.normal_(m.weight, 0.0, fc_init_std, generator=generator)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)  # nn.Linear's own init, from the seeded generator
                nn.init.uniform_(m.weight, -bound, bound, generator=generator)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def grid_end(self, feature: str) -> int:
        """features[:grid_end(f)] ends with the ReLU after that conv, before the next max-pool (conv5_3: 30; 43 with
        BN)."""
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        return pools[GRID_POOLS[feature]]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised pixels -> (B, num_classes) logits."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def load_weights(net: VGG16, weights: str, kind: str = "vgg16") -> None:
    """Load published weights by name ("imagenet": torchvision's file, downloaded once into torch's hub cache and
    hash checked; "demo": the demo's pretrained encoder shipped in the package) or a local state-dict file
    (.pth or .safetensors) into `net`, strictly; a file that does not fit names the first mismatching key."""
    load_state(net, *read_weights(weights, kind))


def load_state(net: VGG16, state: dict[str, Tensor], source: str) -> None:
    """Load a state dict into `net` strictly (CheckpointError names the first mismatching key)."""
    for key, tensor in net.state_dict().items():  # files older than BatchNorm's step counter (vgg16_bn's) lack it
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(tensor, device="cpu")
    check_state_dict(net, state, source)
    # assign=True: a network built on the meta device (no wasted random init) takes the loaded tensors as they are
    net.load_state_dict(
        {k: v if k.endswith("num_batches_tracked") else v.float() for k, v in state.items()}, strict=True, assign=True
    )


def read_weights(weights: str, kind: str) -> tuple[dict[str, Tensor], str]:
    """(state dict, where it came from) for a published name or a file (see `load_weights`)."""
    if weights in PUBLISHED.get(kind, {}):
        source = PUBLISHED[kind][weights]
        return _fetch(source, kind), source
    shipped = packaged_path(kind, weights)
    if shipped is not None:
        if not shipped.is_file():
            raise CheckpointError(
                f"{kind}@{weights}: the shipped weights {shipped} are missing from this install; "
                "make them with `captionkit demo --pretrain-encoders`"
            )
        return _read_state(shipped), f"{kind}@{weights}"
    if weights in ("imagenet", "demo"):
        named = ", ".join(
            [
                *(f"{k}@{w}" for k, ws in PUBLISHED.items() for w in ws),
                *(f"{k}@{n}" for k, n in PACKAGED if k in VARIANTS),
            ]
        )
        raise CheckpointError(
            f"{kind} has no published weights named {weights!r} (published: {named}); use "
            f"{kind}:FEATURE (random) or @PATH"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"VGG weights file {path} does not exist; pass the path of a state-dict file such "
            f"as torchvision's vgg16-397923af.pth, or @imagenet to download it"
        )
    return _read_state(path), str(path)


def _fetch(url: str, kind: str) -> dict[str, Tensor]:
    try:
        return dict(torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True))
    except (OSError, RuntimeError) as exc:  # no network, or a download whose hash does not match
        raise CheckpointError(
            f"could not fetch {kind} ImageNet weights from {url} ({exc}); download the file "
            f"elsewhere and pass its path: {kind}:fc2@/path/to/{url.rsplit('/', 1)[1]}"
        ) from exc


def _read_state(path: Path) -> dict[str, Tensor]:
    """A state dict from a .safetensors file or a torch .pth file (read with weights_only: no code runs)."""
    if not path.is_file():
        raise CheckpointError(f"VGG weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a torch state-dict file (.pth or .safetensors) ({exc})") from exc


def check_state_dict(net: nn.Module, state: Any, source: str) -> None:
    """Raise CheckpointError naming the first key that is missing, unexpected or of the wrong shape."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{source}: expected a state dict of tensors (keys features.N.weight, ...), got {type(state).__name__}"
        )
    expected = net.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(
                f"{source}: missing key {key!r} (a torchvision VGG16 state dict has "
                f"{len(expected)} keys, this file has {len(state)})"
            )
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: {key!r} has shape {tuple(state[key].shape)}, the network expects "
                f"{tuple(tensor.shape)} (wrong variant or not a VGG16 file?)"
            )
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
    mode). feature "conv5_3" (or "conv4_3", twice as fine): the grid after that ReLU, as (B, L, C) with
    L = grid * grid in row-major order (L index = y * grid + x), i.e. (196, 512) for VGG16 at 224 px: the layout
    attention models expect. Frozen by `load_encoder`; `set_trainable_blocks(n)` unfreezes the top for end-to-end
    fine-tuning.
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
        if feature in GRID_POOLS:
            self.features = net.features[: net.grid_end(feature)]
            self.feature_shape = (variant.grid(feature) ** 2, variant.channels)  # blocks 4 and 5 share a width
        else:
            self.features = net.features
            self.avgpool = net.avgpool
            self.classifier = net.classifier[:5]  # through the second ReLU (and its dropout)
            self.feature_shape = (variant.fc_width,)

    fine_tunable = True

    def preprocess(self, image: Image.Image) -> Tensor:
        return self.preprocessor(image)

    def forward(self, pixel_values: Tensor) -> Tensor:
        x = self.features(pixel_values)  # (B, C, grid, grid) for a grid feature
        if self.feature in GRID_POOLS:
            return x.flatten(2).transpose(1, 2).contiguous()  # (B, L, C)
        return self.classifier(torch.flatten(self.avgpool(x), 1))  # (B, fc_width)

    def conv_blocks(self) -> list[list[nn.Module]]:
        """The layers with weights (convolutions, and their batch norms in the BN layout) of the five blocks,
        bottom to top (a block ends at a max-pool)."""
        blocks: list[list[nn.Module]] = [[]]
        for m in self.features:
            if isinstance(m, nn.MaxPool2d):
                blocks.append([])
            elif isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                blocks[-1].append(m)
        return [b for b in blocks if b]

    def set_trainable_blocks(self, n: int) -> VGGEncoder:
        """Freeze everything, then enable gradients for the last `n` conv blocks (0-5) and, for fc2 and n > 0,
        the two FC layers. The caller's .train()/.eval() decides dropout in the FC layers (and whether batch norms
        update their statistics)."""
        blocks = self.conv_blocks()
        if not 0 <= n <= len(blocks):
            raise ConfigError(f"trainable VGG blocks (finetune_blocks) must be 0..{len(blocks)}, got {n}")
        self.requires_grad_(False)
        for block in blocks[len(blocks) - n :]:
            for layer in block:
                layer.requires_grad_(True)
        if n > 0 and self.feature == "fc2":
            self.classifier.requires_grad_(True)
        return self

    def describe(self) -> dict[str, Any]:
        layout = (
            "(L, C): L = grid positions in row-major order (y * grid + x), C = channels"
            if self.feature in GRID_POOLS
            else "(D,): fc2 activations after ReLU"
        )
        return {
            **super().describe(),
            "feature": self.feature,
            "layout": layout,
            "weights": self.weights or "random (torchvision init, seed 0)",
            "preprocessing": {
                "resize_shorter_side": self.preprocessor.resize,
                "interpolation": "bilinear (PIL)",
                "center_crop": self.preprocessor.crop,
                "mean": list(self.preprocessor.mean),
                "std": list(self.preprocessor.std),
            },
            "variant": asdict(self.variant),
        }


def build_vgg_encoder(kind: str, source: str) -> VGGEncoder:
    """`source` = FEATURE[@WEIGHTS], WEIGHTS = "imagenet" or a state-dict path; no @ = random init with seed 0."""
    parsed = EncoderSpec(kind, source)
    feature, weights = parsed.base, parsed.weights
    if feature not in FEATURE_KINDS:
        raise UnknownNameError(
            f"unknown {kind} feature {feature!r} in spec {kind}:{source}; valid: "
            f"{', '.join(f'{kind}:{f}' for f in FEATURE_KINDS)} (optionally @imagenet or @PATH)"
        )
    variant = VARIANTS[kind]
    if weights:
        state, where = read_weights(weights, kind)
        # the classifier's last layer has one output per class of whatever it was pretrained on (ImageNet's 1,000,
        # a label set of `encoder pretrain`); the features never read it, so the file decides its size
        last = state.get("classifier.6.weight")
        if last is not None:
            variant = replace(variant, num_classes=int(last.shape[0]))
        with torch.device("meta"):  # shapes only: every tensor comes from the weights file
            net = VGG16(variant)
        load_state(net, state, where)
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


@register_encoder("vgg16-bn")
def vgg16_bn_encoder(source: str) -> VGGEncoder:
    """torchvision's vgg16_bn: `vgg16-bn:fc2@imagenet`, `vgg16-bn:conv5_3@/path/to/vgg16_bn-6c64b313.pth`."""
    return build_vgg_encoder("vgg16-bn", source)


@register_encoder("vgg16-bn-small")
def vgg16_bn_small_encoder(source: str) -> VGGEncoder:
    """`vgg16-bn-small:fc2@demo` (256,) and `vgg16-bn-small:conv5_3@demo` (36, 128) at 96 px: the demo's encoder,
    pretrained as a multi-label classifier on the labelled scene stream (`captionkit demo --pretrain-encoders`)."""
    return build_vgg_encoder("vgg16-bn-small", source)
