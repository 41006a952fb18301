"""Pretrain an image encoder as a classifier on labelled images: the step that gives VGG16 its ImageNet weights and a
CLIP its image tower, before either ever sees a caption.

A VGG kind (`vgg16`, `vgg16-bn`, `vgg16-small`, `vgg16-bn-small`) trains its own classifier layers, one output per
label, and is written in torchvision's layout (`OUT/weights.safetensors`, usable as `KIND:fc2@OUT/weights.safetensors`
or `KIND:conv5_3@...`). A CLIP (`clip:SOURCE`, SOURCE a config or a CLIP directory) trains its vision tower and
image projection under a linear label head and is written as a CLIP directory (`OUT/clip`), whose text tower
`clip pretrain --image-tower OUT/clip` then aligns with captions while the image side stays locked (LiT).

It runs on the training engine (accelerate, its schedule, `training/checkpoint.py` checkpoints, the run logger,
torchrun) with the Classification objective: multi-label sigmoid cross-entropy, or softmax cross-entropy when
every image has exactly one label. On the scene stream a VGG can also learn where things are (`location_weight`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from captionkit.config import to_dict
from captionkit.data.labelled import STREAM_PREFIX, LabelledImages, load_labelled
from captionkit.errors import CheckpointError, ConfigError
from captionkit.training.config import TrainConfig
from captionkit.training.engine import Engine, TrainerState
from captionkit.training.pretrain_objectives import Classification
from captionkit.training.pretrain_run import DONE_MARKER, PretrainJob, mark_done, run_pretraining

log = logging.getLogger(__name__)
LABELS_NAME = "labels.json"
VGG_WEIGHTS = "weights.safetensors"
CLIP_DIR = "clip"


@dataclass
class EncoderPretrainConfig:
    encoder: str = "vgg16-bn-small"  # a VGG kind, or clip:SOURCE (a CLIP config or directory)
    data: str = "synth:0"  # synth:SEED, a folder of class subfolders, or a .csv/.tsv/.jsonl of image + labels
    data_options: dict[str, str] = field(default_factory=dict)  # image_column, labels_column, separator
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_ratio: float = 0.15
    max_grad_norm: float = 1.0
    # "grouped": sigmoid cross-entropy averaged per label group (the scene stream's colour / shape / kind / count
    # levels), then over groups; "mean": one mean over all labels
    label_loss: str = "grouped"
    # A curriculum: for the first `first_steps` steps only these label groups count. Measured on the demo's VGG: with
    # colour labels from the start it learnt colours and stayed at the majority rate on shapes for 1,750 steps;
    # on shape labels alone it reached 0.97-1.00 on three shapes in 400 steps.
    first_groups: list[str] = field(default_factory=list)
    first_steps: int = 0
    first_other_weight: float = 0.0  # the weight of the other groups' loss during the first steps
    # A VGG weights file (an earlier run's weights.safetensors) to start from instead of random weights, with a new
    # optimizer and warm-up: a second stage of training. Measured on the demo's VGG: after shape labels it stayed
    # blind to colour (0.73, the majority rate) while training on with the same optimizer state; restarted like this
    # (the demo's stages 2 and 3), held-out colour accuracy reached 0.92, then 0.99.
    init_from: str = ""
    # synth:SEED with a VGG only: the weight of a second loss, how much of each conv4_3 grid cell each colour and
    # shape covers (scene_coverage, predicted by a 1x1 convolution that is dropped when the weights are written).
    # Labels of the whole image teach every cell the whole scene (a conv4_3 cell sees all of a 96 px image); this
    # teaches each cell what lies in it, so an attention model can find an object by looking at it (the demo's
    # analogue of pretraining on detection boxes). Measured on the demo: see DemoEncodersConfig.
    location_weight: float = 0.0
    mixed_precision: str = "no"  # "bf16": autocast (CPUs with AVX-512 BF16 or AMX, and GPUs), weights stay fp32
    num_workers: int = 1  # processes decoding (or drawing) images beside the training process
    checkpoint_every_steps: int = 250
    eval_images: int = 256  # synth only: held-out images of another stream seed, scored at every checkpoint
    seed: int = 0


@dataclass
class _Classifier:
    """A network (pixels -> one logit per label, and coverage logits with a location head), its preprocessing, how
    to write it as an encoder, and the VGG inside it (None for a CLIP)."""

    net: nn.Module
    preprocess: Callable[[Any], Tensor]
    save: Callable[[Path], None]
    vgg: nn.Module | None = None


LOCATION_FEATURE = "conv4_3"  # the grid the location loss teaches (an 8th of the input size on each side)
LABEL_LAYER = "classifier.6"  # a torchvision VGG's last layer: one output per label


class LabelVocabulary:
    """The label names in output order; saved with every checkpoint, like a caption model's tokenizer."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}

    def save_pretrained(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / LABELS_NAME).write_text(json.dumps(self.names) + "\n", encoding="utf-8")

    def targets(self, labels: list[str]) -> Tensor:
        target = torch.zeros(len(self.names))
        target[[self.index[n] for n in labels if n in self.index]] = 1.0
        return target


class _Positions(torch.utils.data.Dataset):
    """Training sample number -> (pixels, targets). Sample p of a finite source is image perm_e[p mod N] of epoch
    e = p // N (a seeded permutation per epoch); of the endless stream, image p itself. So the data order is a
    function of the position alone and a resumed run continues exactly where the checkpoint left off."""

    def __init__(
        self,
        source: LabelledImages,
        vocab: LabelVocabulary,
        preprocess: Callable[[Any], Tensor],
        start: int,
        stop: int,
        seed: int,
        coverage: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        self.source, self.vocab, self.preprocess = source, vocab, preprocess
        self.start, self.stop, self.seed, self.coverage = start, stop, seed, coverage
        self.endless = source.endless  # a finite source is shuffled per epoch even when one epoch covers the run

    def __len__(self) -> int:
        return self.stop - self.start

    def image_index(self, position: int) -> int:
        if self.endless:
            return position
        epoch, offset = divmod(position, len(self.source))
        return int(self._order(epoch)[offset])

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one source per process) the current epoch's order (and the next one's at a boundary), not one per image
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.source))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        index = self.image_index(self.start + i)
        image, labels = self.source[index]
        item = {"features": self.preprocess(image), "targets": self.vocab.targets(labels)}
        if self.coverage is not None:
            item["coverage"] = torch.from_numpy(self.coverage(index))
        return item


def pretrain_encoder(out: str | Path, config: EncoderPretrainConfig | None = None, progress: bool = True) -> Path:
    """Train `config.encoder` as a classifier on `config.data` on the training engine; returns OUT. A finished OUT
    with the same settings is reused; an interrupted one resumes from its last checkpoint; one made with other
    settings is refused."""
    cfg = config or EncoderPretrainConfig()
    out = Path(out)
    if cfg.label_loss not in ("grouped", "mean"):
        raise ConfigError(f"label_loss={cfg.label_loss!r}: use grouped or mean")
    if (out / DONE_MARKER).is_file() and not ((out / VGG_WEIGHTS).is_file() or (out / CLIP_DIR).is_dir()):
        raise CheckpointError(f"{out}: marked finished but its weights are missing; delete {out} to train again")
    # one epoch of `steps` batches: the dataset orders the images itself (see _Positions)
    train = TrainConfig(
        epochs=1,
        max_steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        schedule="cosine",
        max_grad_norm=cfg.max_grad_norm,
        mixed_precision=cfg.mixed_precision,
        num_workers=cfg.num_workers,
        checkpoint_every_steps=cfg.checkpoint_every_steps,
        keep_last_n=1,
        seed=cfg.seed,
    )
    run_pretraining(EncoderPretrainJob(cfg, out), train, "encoder pretrain", progress)
    return out


class EncoderPretrainJob(PretrainJob):
    """A classifier on labelled images as an engine job; scored on held-out images at every checkpoint."""

    shuffle = False

    def __init__(self, cfg: EncoderPretrainConfig, out: Path) -> None:
        self.cfg, self.out = cfg, out
        self.settings = json.loads(json.dumps(to_dict(cfg)))
        self.defaults = to_dict(EncoderPretrainConfig())

    def setup(self, engine: Engine, checkpoint: Path | None) -> None:
        cfg = self.cfg
        source = load_labelled(cfg.data, **cfg.data_options)
        self.vocab = LabelVocabulary(list(source.label_names))
        groups = (
            _group_index(source)
            if cfg.label_loss == "grouped"
            else torch.zeros(len(self.vocab.names), dtype=torch.long)
        )
        coverage = _coverage_targets(cfg, source)
        self.classifier = build_classifier(cfg.encoder, len(self.vocab.names), locate=coverage is not None)
        if cfg.init_from:
            _load_init_weights(self.classifier.vgg, cfg.encoder, cfg.init_from, self.vocab.names)
        self.model, self.saved = self.classifier.net, self.vocab
        self.objective = Classification(
            _single_label(source),
            groups,
            _first_mask(source, cfg),
            cfg.first_steps,
            cfg.first_other_weight,
            cfg.location_weight,
        )
        positions = _Positions(
            source, self.vocab, self.classifier.preprocess, 0, cfg.steps * cfg.batch_size, cfg.seed, coverage
        )
        self.train_data = self.objective.train_data(positions)
        self.scorer = _evaluator(cfg, self.vocab, self.classifier.preprocess)

    def start_fields(self) -> dict[str, Any]:
        return {"labels": len(self.vocab.names), "encoder": self.cfg.encoder}

    def evaluate(self, engine: Engine, state: TrainerState, train_stats: dict[str, float], epoch_end: bool) -> None:
        scores = self.scorer(engine.unwrapped) if self.scorer else {}
        train = {f"train_{k}": v for k, v in train_stats.items()}
        engine.logger.event("eval", step=state.global_step, **train, **scores)
        engine.logger.scalars(state.global_step, {k.replace("_", "/", 1): v for k, v in scores.items()})
        engine.logger.message(
            " ".join([f"step {state.global_step}:"] + [f"{k}={v:.4f}" for k, v in {**train, **scores}.items()])
        )

    def finish(self, engine: Engine, state: TrainerState) -> None:
        if engine.accelerator.is_main_process:
            engine.unwrapped.eval()
            self.classifier.save(self.out)
            self.vocab.save_pretrained(str(self.out))
            mark_done(self.out, {"steps": state.global_step})


def _load_init_weights(net: nn.Module | None, encoder: str, path: str, labels: list[str]) -> None:
    """Start from an earlier run's VGG weights (same kind) instead of random init. Where this run has other labels
    and the earlier run's labels.json lies beside its weights, the label layer is matched by name: rows of labels
    both runs have are copied, new labels keep their fresh initialisation (as a new head on an ImageNet backbone)."""
    from captionkit.models import vgg

    if net is None:
        raise ConfigError(f"init_from={path!r}: only a VGG kind can start from a weights file, not {encoder!r}")
    if not Path(path).is_file():
        raise ConfigError(f"init_from={path!r}: no such weights file (an earlier run's {VGG_WEIGHTS})")
    state, source = vgg.read_weights(path, encoder)
    earlier = Path(path).with_name(LABELS_NAME)
    if state.get(f"{LABEL_LAYER}.weight", torch.empty(0)).shape[:1] != (len(labels),) and earlier.is_file():
        state = _label_rows_by_name(state, net, json.loads(earlier.read_text(encoding="utf-8")), labels)
    vgg.load_state(net, state, source)  # strict: another kind, or other labels without labels.json, names the key
    net.float()


def _label_rows_by_name(
    state: dict[str, Tensor], net: nn.Module, earlier: list[str], labels: list[str]
) -> dict[str, Tensor]:
    fresh = net.state_dict()
    rows = {name: i for i, name in enumerate(earlier)}
    for key in (f"{LABEL_LAYER}.weight", f"{LABEL_LAYER}.bias"):
        merged = fresh[key].detach().clone()
        for i, name in enumerate(labels):
            if name in rows:
                merged[i] = state[key][rows[name]]
        state = {**state, key: merged}
    return state


def _coverage_targets(cfg: EncoderPretrainConfig, source: LabelledImages) -> Callable[[int], np.ndarray] | None:
    """Image index -> its coverage targets on the location grid, when the run has a location loss."""
    if not cfg.location_weight:
        return None
    from captionkit.models import vgg

    if cfg.encoder not in vgg.VARIANTS or not hasattr(source, "coverage"):
        raise ConfigError(
            f"location_weight={cfg.location_weight}: only a VGG kind on the scene stream (synth:SEED) learns where "
            f"objects are (encoder {cfg.encoder!r}, data {cfg.data!r}); set location_weight=0"
        )
    variant = vgg.VARIANTS[cfg.encoder]
    grid = variant.grid(LOCATION_FEATURE)
    return functools.partial(source.coverage, size=variant.resize, crop=variant.crop, grid=grid)


def _first_mask(source: LabelledImages, cfg: EncoderPretrainConfig) -> Tensor:
    """(num_labels,) bool: the labels of the curriculum's first groups (all labels when there are none)."""
    if not cfg.first_steps:
        return torch.ones(len(source.label_names), dtype=torch.bool)
    groups = getattr(source, "label_groups", None) or []
    unknown = sorted(set(cfg.first_groups) - set(groups))
    if unknown or not cfg.first_groups:
        raise ConfigError(
            f"first_groups={cfg.first_groups}: this source's label groups are {sorted(set(groups)) or 'none'}"
        )
    return torch.tensor([g in cfg.first_groups for g in groups])


def _group_index(source: LabelledImages) -> Tensor:
    """(num_labels,) group id of each label (all 0 when the source has no groups)."""
    groups = getattr(source, "label_groups", None) or [""] * len(source.label_names)
    names = list(dict.fromkeys(groups))
    return torch.tensor([names.index(g) for g in groups])


def _single_label(source: LabelledImages) -> bool:
    """Softmax for a folder of classes (one label per image), sigmoids for multi-label sources."""
    labels = getattr(source, "labels", None)
    return labels is not None and all(len(ls) == 1 for ls in labels)


def build_classifier(encoder: str, num_labels: int, locate: bool = False) -> _Classifier:
    """The network for an encoder spec (see the module docstring), with `num_labels` outputs; `locate` (a VGG only)
    adds the location head (see EncoderPretrainConfig.location_weight)."""
    from captionkit.models import vgg
    from captionkit.models.encoders import parse_spec

    spec = parse_spec(encoder, source_required=False)
    kind, source = spec.kind, spec.source
    if kind in vgg.VARIANTS:
        if source:
            raise ConfigError(f"encoder {encoder!r}: a VGG to pretrain is named by its kind alone, e.g. {kind}")
        variant = dataclasses.replace(vgg.VARIANTS[kind], num_classes=num_labels)
        net = vgg.VGG16(variant)

        def save_vgg(out: Path) -> None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / VGG_WEIGHTS))

        trained = _LocatingVGG(net) if locate else net
        return _Classifier(trained, vgg.ImageNetPreprocess(variant.resize, variant.crop), save_vgg, net)
    if kind == "clip":
        from captionkit.models import hf

        clip, processor, _ = hf.load_clip(source)
        head = _CLIPImageClassifier(clip, num_labels)

        def save_clip(out: Path) -> None:
            hf.save_clip(out / CLIP_DIR, clip, processor)

        return _Classifier(head, lambda image: hf.clip_preprocess(processor, image), save_clip)
    valid = ", ".join([*vgg.VARIANTS, "clip:SOURCE"])
    raise ConfigError(f"encoder {encoder!r} cannot be pretrained as a classifier; valid: {valid}")


class _LocatingVGG(nn.Module):
    """A VGG classifier with a second head: a 1x1 convolution on the conv4_3 grid that predicts how much of each
    cell each colour and shape covers. Only the VGG is written out (torchvision's layout has no place for the head,
    as a backbone is published without its detection head)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        from captionkit.data.scene_stream import COVERAGE_CHANNELS

        self.net = net
        self.grid_end = net.grid_end(LOCATION_FEATURE)
        # conv4_3 has as many channels as conv5_3 (VGG16's 512, divided by the variant's width divisor)
        self.coverage = nn.Conv2d(net.variant.channels, len(COVERAGE_CHANNELS), kernel_size=1)

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) -> label logits (B, labels), coverage logits (B, channels, S/8, S/8)."""
        grid = self.net.features[: self.grid_end](pixel_values)
        top = self.net.avgpool(self.net.features[self.grid_end :](grid))
        return self.net.classifier(torch.flatten(top, 1)), self.coverage(grid)


class _CLIPImageClassifier(nn.Module):
    """A linear label head on CLIP's projected image embedding: training it trains the vision tower and the image
    projection (the parts ClipCap and LiT read); the text tower gets no gradient."""

    def __init__(self, clip: nn.Module, num_labels: int) -> None:
        super().__init__()
        from captionkit.models import hf

        self.clip = clip
        self.embed = hf.clip_image_embeds
        self.head = nn.Linear(int(clip.config.projection_dim), num_labels)
        clip.requires_grad_(False)
        for p in hf.clip_image_parameters(clip):
            p.requires_grad_(True)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.head(self.embed(self.clip, pixel_values))


def _evaluator(
    cfg: EncoderPretrainConfig, vocab: LabelVocabulary, preprocess: Callable[[Any], Tensor]
) -> Callable[[nn.Module], dict[str, float]] | None:
    """For the scene stream: accuracy on `eval_images` held-out images of another stream seed (per label group)."""
    if not cfg.data.startswith(STREAM_PREFIX) or not cfg.eval_images:
        return None
    from captionkit.data.scene_grammar import COLOURS, SHAPES
    from captionkit.data.scene_stream import SceneStream

    held_out = SceneStream(seed=int(cfg.data[len(STREAM_PREFIX) :] or 0) + 1)
    samples = [held_out[i] for i in range(cfg.eval_images)]
    pixels = torch.stack([preprocess(image) for image, _ in samples])
    targets = torch.stack([vocab.targets(labels) for _, labels in samples]).bool()
    groups = {"shape": [vocab.index[s] for s in SHAPES], "colour": [vocab.index[c] for c in COLOURS]}
    backgrounds = [i for name, i in vocab.index.items() if name.endswith(" background")]
    if backgrounds:
        groups["background"] = backgrounds

    @torch.no_grad()
    def evaluate(net: nn.Module) -> dict[str, float]:
        net.eval()
        device = next(net.parameters()).device
        predicted = torch.cat([_labels(net(pixels[i : i + 64].to(device))) > 0 for i in range(0, len(pixels), 64)])
        correct = predicted == targets
        scores = {
            f"eval_{name}_accuracy": round(correct[:, idx].float().mean().item(), 4) for name, idx in groups.items()
        }
        scores["eval_exact_match"] = round(correct.all(dim=1).float().mean().item(), 4)
        return scores

    return evaluate


def _labels(output: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """The label logits of a classifier's output (a locating VGG also returns coverage logits)."""
    return (output[0] if isinstance(output, tuple) else output).float().cpu()
