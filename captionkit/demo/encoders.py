"""`captionkit demo --pretrain-encoders`: make the demo's shipped encoders (captionkit/pretrained/) from a fixed seed.

Both are trained as multi-label classifiers on the labelled scene stream (data/scene_stream.py), the offline
analogue of ImageNet: a VGG16-bn-layout network (`vgg16-bn-small`, in stages: shape labels first, then every label
from those weights with a new optimizer, twice, then kind and count labels first, then the backgrounds and where
each object is) and the image side of a small
CLIP (`captionkit:demo-clip`, a ViT). The caption dataset's pictures are never among them. The weights are then
written into the package in fp16 (small enough to ship), where `make demo` finds them.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError
from captionkit.pretrained import DIRECTORY, PACKAGED
from captionkit.training.encoder_pretrain import CLIP_DIR, VGG_WEIGHTS, EncoderPretrainConfig, pretrain_encoder

log = logging.getLogger(__name__)


def _vgg_stage(**settings: Any) -> EncoderPretrainConfig:
    # bf16 autocast: 2x faster convolutions on a CPU with AVX-512 BF16 (measured here), same accuracy
    return EncoderPretrainConfig(encoder="vgg16-bn-small", batch_size=32, lr=1e-3, mixed_precision="bf16", **settings)


@dataclass
class DemoEncodersConfig:
    # The VGG in stages, each after the first starting from the previous one's weights with a new optimizer and
    # warm-up (`init_from`): shape labels first (with colour labels from the start it learnt colours and never
    # shapes; after shapes, training on with the same optimizer state never learnt colours), then every label, twice,
    # then the kind and count labels ("red circle", "red circle x2") first, the others at weight 0.3: which colour
    # goes with which shape is what the merge model must read from the one fc2 vector (its object_f1 with stage 4's
    # weights 0.744 against 0.722 with stage 3's; held-out exact match over all 131 labels 0.227 -> 0.297).
    # Stage 5 adds what the captions also say and the grid must show: the background's colour (three more labels; the
    # earlier stages' rows of the label layer are kept) and, through the location loss, what lies in each conv4_3
    # cell, which Show-Attend-Tell's attention needs to find an object. Stage 4's weighting stays (kind and count
    # labels first, the rest, backgrounds included, at 0.3): with backgrounds among the first groups and location
    # weight 5, 1,500 steps cost what stage 4 had taught (held-out images with every kind label right 0.78 -> 0.66,
    # the merge model's object_f1 0.77 -> 0.68; at lr 3e-4 0.60); as below, 0.83.
    # Each stage draws fresh stream images (its own seed; held-out evaluation on the next seed).
    vgg: list[EncoderPretrainConfig] = field(
        default_factory=lambda: [
            _vgg_stage(data="synth:0", steps=2500, first_groups=["shape"], first_steps=1000, first_other_weight=0.3),
            _vgg_stage(data="synth:2", steps=2000),
            _vgg_stage(data="synth:4", steps=2000),
            _vgg_stage(
                data="synth:6", steps=2000, first_groups=["kind", "count"], first_steps=2000, first_other_weight=0.3
            ),
            _vgg_stage(
                data="synth:8",
                steps=2000,
                data_options={"groups": "colour,shape,kind,count,background"},
                first_groups=["kind", "count"],
                first_steps=2000,
                first_other_weight=0.3,
                location_weight=1.0,
            ),
        ]
    )
    clip: EncoderPretrainConfig = field(
        default_factory=lambda: EncoderPretrainConfig(
            encoder="clip:captionkit:demo-clip", data="synth:0", steps=5000, batch_size=64, lr=1e-3, label_loss="mean"
        )
    )


# under the work folder, one per stage
VGG_STAGE_DIRS = ("vgg", "vgg-all-labels", "vgg-all-labels-2", "vgg-kinds", "vgg-located")


def pretrain_vgg_stages(work: Path, stages: list[EncoderPretrainConfig]) -> Path:
    """Run the VGG stages in order under `work` (each resumable); returns the last stage's output folder."""
    previous: Path | None = None
    for i, stage in enumerate(stages):
        name = VGG_STAGE_DIRS[i] if i < len(VGG_STAGE_DIRS) else f"vgg-stage-{i + 1}"
        if previous is not None:
            stage = dataclasses.replace(stage, init_from=str(previous / VGG_WEIGHTS))
        previous = pretrain_encoder(work / name, stage)
    if previous is None:
        raise ConfigError("the demo VGG recipe has no stages")
    return previous


def pretrain_demo_encoders(
    work: str | Path, config: DemoEncodersConfig | None = None, install: Path = DIRECTORY
) -> dict[str, Path]:
    """Pretrain both demo encoders under `work` (resumable), then write them into `install` (the package's
    pretrained/ folder). Returns {name: installed path}."""
    cfg = config or DemoEncodersConfig()
    work = Path(work)
    vgg_run = pretrain_vgg_stages(work, cfg.vgg)
    clip_run = pretrain_encoder(work / "clip", cfg.clip)
    install.mkdir(parents=True, exist_ok=True)
    vgg_file = install / PACKAGED[("vgg16-bn-small", "demo")]
    _write_fp16(vgg_run / VGG_WEIGHTS, vgg_file)
    clip_dir = install / PACKAGED[("clip", "captionkit:demo-clip-vision")]
    _install_clip(clip_run / CLIP_DIR, clip_dir)
    for path in (vgg_file, clip_dir):
        log.info("installed %s", path)
    return {"vgg": vgg_file, "clip": clip_dir}


def _write_fp16(source: Path, target: Path) -> None:
    """Float tensors as fp16 (half the bytes; the loader reads them back as fp32), counters as they are."""
    from safetensors.torch import load_file, save_file

    state = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(source)).items()}
    save_file(state, str(target))


def _install_clip(source: Path, target: Path) -> None:
    """The CLIP directory with its weights in fp16 (`hf.load_clip` reads them back as fp32)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    for weights in target.glob("*.safetensors"):
        _write_fp16(weights, weights)
