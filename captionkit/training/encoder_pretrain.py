"""Pretrain an image encoder as a classifier on labelled images: the step that gives VGG16 its ImageNet weights and a
CLIP its image tower, before either ever sees a caption.

A VGG kind (`vgg16`, `vgg16-bn`, `vgg16-small`, `vgg16-bn-small`) trains its own classifier layers, one output per
label, and is written in torchvision's layout (`OUT/weights.safetensors`, usable as `KIND:fc2@OUT/weights.safetensors`
or `KIND:conv5_3@...`). A CLIP (`clip:SOURCE`, SOURCE a config or a CLIP directory) trains its vision tower and
image projection under a linear label head and is written as a CLIP directory (`OUT/clip`), whose text tower
`clip pretrain --image-tower OUT/clip` then aligns with captions while the image side stays locked (LiT).

The loop is the engine's recipe (accelerate, its schedule, `training/checkpoint.py` checkpoints, the run logger):
multi-label sigmoid cross-entropy, or softmax cross-entropy when every image has exactly one label.
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

from captionkit.config import to_dict, write_resolved_config
from captionkit.data.labelled import STREAM_PREFIX, LabelledImages, load_labelled
from captionkit.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
DONE_MARKER = "pretrain_done.json"
CONFIG_NAME = "pretrain_config.json"
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
    # blind to colour (0.73, the majority rate) while training on with the same optimizer state; restarted like this,
    # colour rose from 0.70 to 0.81 in 500 steps.
    init_from: str = ""
    mixed_precision: str = "no"  # "bf16": autocast (CPUs with AVX-512 BF16 or AMX, and GPUs), weights stay fp32
    num_workers: int = 1  # processes decoding (or drawing) images beside the training process
    checkpoint_every_steps: int = 250
    eval_images: int = 256  # synth only: held-out images of another stream seed, scored at every checkpoint
    seed: int = 0


@dataclass
class _Classifier:
    """A network (pixels -> one logit per label), its preprocessing, and how to write it as an encoder."""

    net: nn.Module
    preprocess: Callable[[Any], Tensor]
    save: Callable[[Path], None]


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
    ) -> None:
        self.source, self.vocab, self.preprocess = source, vocab, preprocess
        self.start, self.stop, self.seed = start, stop, seed
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

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        image, labels = self.source[self.image_index(self.start + i)]
        return self.preprocess(image), self.vocab.targets(labels)


def pretrain_encoder(out: str | Path, config: EncoderPretrainConfig | None = None, progress: bool = True) -> Path:
    """Train `config.encoder` as a classifier on `config.data`; returns OUT. A finished OUT with the same settings
    is reused; an interrupted one resumes from its last checkpoint; one made with other settings is refused."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from captionkit.training import checkpoint as ckpt
    from captionkit.training.engine import make_scheduler
    from captionkit.training.logging import RunLogger

    cfg = config or EncoderPretrainConfig()
    out = Path(out)
    _check_settings(out, cfg)
    if (out / DONE_MARKER).is_file():
        log.info("encoder pretrain: %s is already trained, reusing it", out)
        return out
    source = load_labelled(cfg.data, **cfg.data_options)
    vocab = LabelVocabulary(list(source.label_names))
    single_label = _single_label(source)
    if cfg.label_loss not in ("grouped", "mean"):
        raise ConfigError(f"label_loss={cfg.label_loss!r}: use grouped or mean")
    groups = _group_index(source) if cfg.label_loss == "grouped" else torch.zeros(len(vocab.names), dtype=torch.long)
    first_mask = _first_mask(source, cfg)
    set_seed(cfg.seed)
    classifier = build_classifier(cfg.encoder, len(vocab.names))
    if cfg.init_from:
        _load_init_weights(classifier.net, cfg.encoder, cfg.init_from)
    has_gpu = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not has_gpu, mixed_precision=cfg.mixed_precision)
    checkpoints, invalid = ckpt.find_checkpoints(out)
    for path in invalid:
        ckpt.set_aside(path)
    start = checkpoints[0][1]["global_step"] if checkpoints else 0
    write_resolved_config(cfg, out, CONFIG_NAME)
    data = _Positions(
        source, vocab, classifier.preprocess, start * cfg.batch_size, cfg.steps * cfg.batch_size, cfg.seed
    )
    # its own generator: starting the loader's iterator must not draw from the global stream that dropout uses,
    # or a resumed run (whose iterator starts after the RNG restore) would drop other units than an uninterrupted one
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        prefetch_factor=4 if cfg.num_workers else None,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    decay = [p for p in classifier.net.parameters() if p.dim() >= 2]
    no_decay = [p for p in classifier.net.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    schedule_cfg = _ScheduleSettings(warmup_ratio=cfg.warmup_ratio)
    model, optimizer = accelerator.prepare(classifier.net, optimizer)
    scheduler = make_scheduler(optimizer, schedule_cfg, cfg.steps)
    net = accelerator.unwrap_model(model)
    if checkpoints:
        ckpt.load_checkpoint(checkpoints[0][0], accelerator, net, optimizer, scheduler)
        log.info("encoder pretrain: resuming %s at step %d of %d", out, start, cfg.steps)
    evaluate = _evaluator(cfg, vocab, classifier.preprocess)
    logger = RunLogger(out, accelerator.is_main_process, cfg.steps, start, progress=progress)
    logger.event("start", step=start, total_steps=cfg.steps, labels=len(vocab.names), encoder=cfg.encoder)
    step = start
    try:
        model.train()
        for pixels, targets in loader:
            logits = model(pixels.to(accelerator.device)).float()
            targets = targets.to(accelerator.device)
            if single_label:
                loss = nn.functional.cross_entropy(logits, targets.argmax(1))
            elif step < cfg.first_steps:  # the curriculum's first part: its label groups (the others weigh less)
                loss = grouped_bce(logits[:, first_mask], targets[:, first_mask], _dense(groups[first_mask]))
                if cfg.first_other_weight:
                    loss = loss + cfg.first_other_weight * grouped_bce(
                        logits[:, ~first_mask], targets[:, ~first_mask], _dense(groups[~first_mask])
                    )
            else:
                loss = grouped_bce(logits, targets, groups)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            logger.progress(1, loss=loss.item())
            if step % cfg.checkpoint_every_steps == 0 or step == cfg.steps:
                scores = evaluate(net) if evaluate else {}
                model.train()
                logger.event("checkpoint", step=step, train_loss=loss.item(), **scores)
                logger.message(
                    " ".join([f"step {step}: loss={loss.item():.4f}"] + [f"{k}={v:.4f}" for k, v in scores.items()])
                )
                ckpt.save_checkpoint(
                    accelerator,
                    out,
                    net,
                    optimizer,
                    scheduler,
                    vocab,
                    {"global_step": step, "epoch": 0, "batches_in_epoch": step},
                    keep_last_n=1,
                )
    finally:
        logger.close()
    if accelerator.is_main_process:
        net.eval()
        classifier.save(out)
        vocab.save_pretrained(str(out))
        (out / DONE_MARKER).write_text(json.dumps({"steps": step}) + "\n", encoding="utf-8")
    accelerator.end_training()
    return out


@dataclass
class _ScheduleSettings:
    """The fields of TrainConfig that `make_scheduler` reads: one-cycle-like warm-up then cosine decay."""

    warmup_ratio: float
    warmup_steps: int = 0
    schedule: str = "cosine"


def _load_init_weights(net: nn.Module, encoder: str, path: str) -> None:
    """Start from an earlier run's VGG weights (same kind and labels) instead of random init."""
    from captionkit.models import vgg

    if encoder not in vgg.VARIANTS:
        raise ConfigError(f"init_from={path!r}: only a VGG kind can start from a weights file, not {encoder!r}")
    if not Path(path).is_file():
        raise ConfigError(f"init_from={path!r}: no such weights file (an earlier run's {VGG_WEIGHTS})")
    state, source = vgg.read_weights(path, encoder)
    vgg.load_state(net, state, source)  # strict: another kind or label count is a CheckpointError naming the key
    net.float()


def _dense(groups: Tensor) -> Tensor:
    """Group ids renumbered 0..k-1 (a subset of the labels holds a subset of the groups)."""
    return torch.unique(groups, return_inverse=True)[1]


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


def grouped_bce(logits: Tensor, targets: Tensor, groups: Tensor) -> Tensor:
    """Sigmoid cross-entropy averaged within each label group, then over the groups: (B, L), (B, L), (L,) -> ()."""
    per_label = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(0)  # (L,)
    groups = groups.to(per_label.device)
    sums = torch.zeros(int(groups.max()) + 1, device=per_label.device).index_add_(0, groups, per_label)
    return (sums / torch.bincount(groups).to(per_label.dtype)).mean()


def _single_label(source: LabelledImages) -> bool:
    """Softmax for a folder of classes (one label per image), sigmoids for multi-label sources."""
    labels = getattr(source, "labels", None)
    return labels is not None and all(len(ls) == 1 for ls in labels)


def build_classifier(encoder: str, num_labels: int) -> _Classifier:
    """The network for an encoder spec (see the module docstring), with `num_labels` outputs."""
    from captionkit.models import vgg

    kind, _, source = encoder.partition(":")
    if kind in vgg.VARIANTS:
        if source:
            raise ConfigError(f"encoder {encoder!r}: a VGG to pretrain is named by its kind alone, e.g. {kind}")
        variant = dataclasses.replace(vgg.VARIANTS[kind], num_classes=num_labels)
        net = vgg.VGG16(variant)

        def save_vgg(out: Path) -> None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / VGG_WEIGHTS))

        return _Classifier(net, vgg.ImageNetPreprocess(variant.resize, variant.crop), save_vgg)
    if kind == "clip":
        from captionkit.models import hf

        clip, processor, _ = hf.load_clip(source)
        head = _CLIPImageClassifier(clip, num_labels)

        def save_clip(out: Path) -> None:
            hf.save_clip(out / CLIP_DIR, clip, processor)

        return _Classifier(head, lambda image: hf.clip_preprocess(processor, image), save_clip)
    valid = ", ".join([*vgg.VARIANTS, "clip:SOURCE"])
    raise ConfigError(f"encoder {encoder!r} cannot be pretrained as a classifier; valid: {valid}")


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

    @torch.no_grad()
    def evaluate(net: nn.Module) -> dict[str, float]:
        net.eval()
        device = next(net.parameters()).device
        predicted = torch.cat([net(pixels[i : i + 64].to(device)).float().cpu() > 0 for i in range(0, len(pixels), 64)])
        correct = predicted == targets
        scores = {
            f"eval_{name}_accuracy": round(correct[:, idx].float().mean().item(), 4) for name, idx in groups.items()
        }
        scores["eval_exact_match"] = round(correct.all(dim=1).float().mean().item(), 4)
        return scores

    return evaluate


def _check_settings(out: Path, cfg: EncoderPretrainConfig) -> None:
    """Refuse to reuse or resume an OUT that was started with other settings."""
    path = out / CONFIG_NAME
    if not path.is_file():
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    now = json.loads(json.dumps(to_dict(cfg)))
    defaults = json.loads(json.dumps(to_dict(EncoderPretrainConfig())))  # a setting added later: its default matches
    changed = sorted(k for k in {*before, *now} if before.get(k, defaults.get(k)) != now.get(k))
    if changed:
        raise ConfigError(
            f"{out} was started with {changed[0]}={before.get(changed[0])!r}, now "
            f"{now.get(changed[0])!r}; pass another --out, or delete {out} to start again"
        )
    if (out / DONE_MARKER).is_file() and not ((out / VGG_WEIGHTS).is_file() or (out / CLIP_DIR).is_dir()):
        raise CheckpointError(f"{out}: marked finished but its weights are missing; delete {out} to train again")
