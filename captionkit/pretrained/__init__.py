"""Encoder weights shipped inside the package: the demo's pretrained encoders (the offline stand-ins for ImageNet
VGG16 and OpenAI's CLIP image tower), written by `captionkit demo --pretrain-encoders`. Data only: it may import
only the foundation (config, registry, errors, version).

  vgg16-bn-small-demo.safetensors   `vgg16-bn-small:fc2@demo`, `vgg16-bn-small:conv4_3@demo`, ... (fp16 on disk)
  demo-clip-vision/                 `captionkit:demo-clip-vision`, a CLIP directory whose image side is the
                                    pretrained one (its text tower is a placeholder: `clip pretrain --image-tower`
                                    trains the real one on captions)
"""

from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
# (encoder kind, the name a spec uses) -> file or folder in this package
PACKAGED = {
    ("vgg16-bn-small", "demo"): "vgg16-bn-small-demo.safetensors",
    ("clip", "captionkit:demo-clip-vision"): "demo-clip-vision",
}


def packaged_path(kind: str, name: str) -> Path | None:
    """Where the shipped weights `name` of encoder `kind` lie, or None when `name` names no shipped weights."""
    entry = PACKAGED.get((kind, name))
    return DIRECTORY / entry if entry else None
