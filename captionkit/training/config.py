"""The typed configuration of a training run: what to train (model, encoder, data), how (TrainConfig), how to
evaluate on the dev split (EvalConfig), and where the run directory is."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit.config import apply_overrides, from_dict, merge, read_config_file
from captionkit.errors import ConfigError

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("no", "bf16", "fp16")
OBJECTIVES = ("cross_entropy", "scst")  # captionkit.training.objectives implements each
SCST_BASELINES = ("mean", "greedy")


@dataclass
class TrainConfig:
    """Optimisation settings. Steps count optimizer updates (one update = grad_accum_steps micro-batches)."""

    epochs: int = 10
    max_steps: int | None = None  # stop after this many updates even if epochs remain
    batch_size: int = 32  # per process; global batch = batch_size * processes * grad_accum_steps
    lr: float = 2e-5
    encoder_lr: float | None = None  # learning rate of an end-to-end fine-tuned image encoder; None: lr
    warmup_steps: int = 0
    # used when warmup_steps is 0: a fraction of all updates, so one setting fits a Flickr8k-size and a COCO-size run
    warmup_ratio: float = 0.0
    schedule: str = "linear"  # decay after warm-up: linear to 0, cosine to 0, or constant
    weight_decay: float = 0.0  # applied to matrices only, not to biases and norm scales
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0  # None or 0: no clipping
    mixed_precision: str = "no"  # "bf16" autocast (GPUs, and CPUs with AVX-512 BF16 or AMX); "fp16" on GPUs only
    seed: int = 0
    max_caption_tokens: int = 40  # caption ids + EOS are cut to this length
    captions_per_image: int | None = None  # None: an epoch visits every caption; N: N random captions per image
    num_workers: int = 2  # DataLoader workers (image decoding for pixel models, feature reads)
    early_stopping_metric: str = "dev_loss"  # or a caption metric computed on dev, e.g. "CIDEr", "Bleu_4"
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping; None: never
    keep_last_n: int = 2  # resumable checkpoints kept in RUN_DIR/checkpoints
    eval_every_epochs: int = 1
    log_every_steps: int = 10
    checkpoint_every_steps: int | None = None  # besides the one at every epoch end; None: epoch ends only
    # "cross_entropy": teacher forcing on (image, caption) pairs; "scst": self-critical training on images (the
    # `scst` section; batch_size then counts images, each sampled scst.samples times)
    objective: str = "cross_entropy"

    def __post_init__(self) -> None:
        positive = (
            "epochs",
            "batch_size",
            "grad_accum_steps",
            "eval_every_epochs",
            "log_every_steps",
            "max_caption_tokens",
            "keep_last_n",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "checkpoint_every_steps", "early_stopping_patience", "captions_per_image"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"train.{name} must be >= 1 or null, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(
                f"train.warmup_steps must be >= 0 and train.warmup_ratio in [0, 1); got "
                f"{self.warmup_steps} and {self.warmup_ratio}"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule={self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"train.mixed_precision={self.mixed_precision!r}; valid: {', '.join(PRECISIONS)}")
        if len(self.adam_betas) != 2:
            raise ConfigError(f"train.adam_betas must be two numbers, got {self.adam_betas}")
        if self.num_workers < 0:
            raise ConfigError(f"train.num_workers must be >= 0, got {self.num_workers}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"train.objective={self.objective!r}; valid: {', '.join(OBJECTIVES)}")


@dataclass
class ScstConfig:
    """Self-critical sequence training (Rennie et al. 2017), used when train.objective is "scst".

    Per image `samples` captions are sampled; reward = CIDEr-D against the image's training references (document
    frequencies of all training references) + length_weight * tokens; baseline = the mean reward of the image's
    other samples (Luo 2020, "mean") or the reward of its greedy caption ("greedy"); loss = -(reward - baseline) *
    the sample's summed token log-probability (EOS included, nothing after it), averaged over samples, minus
    entropy_weight * the mean entropy of the model's next-token distributions along the samples.
    """

    samples: int = 5
    baseline: str = "mean"
    decoding: dict[str, Any] = field(default_factory=dict)  # DecodingConfig fields for sampling (do_sample implied)
    entropy_weight: float = 0.0  # > 0 keeps the distribution from collapsing onto a few captions
    length_weight: float = 0.0  # reward per caption token; < 0 counters the drift to long captions

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"scst.samples must be >= 1, got {self.samples}")
        if self.baseline not in SCST_BASELINES:
            raise ConfigError(f"scst.baseline={self.baseline!r}; valid: {', '.join(SCST_BASELINES)}")
        if self.baseline == "mean" and self.samples < 2:
            raise ConfigError("scst.baseline='mean' (the mean reward of the other samples) needs scst.samples >= 2")
        if self.entropy_weight < 0:
            raise ConfigError(f"scst.entropy_weight must be >= 0, got {self.entropy_weight}")
        from captionkit.config import from_dict
        from captionkit.decoding import DecodingConfig

        if self.decoding.get("num_beams", 1) != 1:
            raise ConfigError("scst.decoding: samples are drawn one token at a time; num_beams must be 1")
        from_dict(DecodingConfig, {**self.decoding, "do_sample": True}, where="scst.decoding")


@dataclass
class EvalConfig:
    """Evaluation on a held-out split after every `train.eval_every_epochs` epochs."""

    split: str = "dev"
    metrics: list[str] = field(default_factory=lambda: ["Bleu_4", "CIDEr"])  # [] for dev loss only
    decoding: dict[str, Any] = field(default_factory=dict)  # captionkit.decoding.DecodingConfig fields
    max_images: int | None = None  # decode at most this many images for the caption metrics
    batch_size: int = 64


@dataclass
class RunConfig:
    """Everything a run needs; written to RUN_DIR/resolved_config.json."""

    model: dict[str, Any]  # {"type": registered model name, **its config fields}
    encoder: str  # "KIND:SOURCE", e.g. "clip:openai/clip-vit-base-patch32" or "vgg16:fc2"
    dataset: str
    out: str
    dataset_format: str = "auto"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    features: str | None = None  # cache dir; None: RUN_DIR/../features/<encoder slug>-<dataset fp>[-<weights stamp>]
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    scst: ScstConfig = field(default_factory=ScstConfig)
    init_from: str | None = None  # a model directory whose weights (and tokenizer) the run starts from
    description: str = ""
    meant_for: str = ""  # the data a preset is meant for (e.g. "Flickr8k-size"), shown by `captionkit models list`

    def __post_init__(self) -> None:
        if not isinstance(self.model, dict) or "type" not in self.model:
            raise ConfigError(
                "model: expected a mapping with a 'type' (a registered model name, see `captionkit models list`)"
            )
        for name in ("dataset", "out", "encoder"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: missing; give it in the config file or as the setting {name}=...")
        _check_init_from(self.train.objective, self.init_from)
        metrics = {m.lower() for m in _metric_names(self.eval.metrics)}  # an unknown metric name fails here
        metric = self.train.early_stopping_metric
        if metric != "dev_loss" and metric.lower() not in metrics:
            raise ConfigError(
                f"train.early_stopping_metric={metric!r} is not computed: use 'dev_loss' or one of "
                f"eval.metrics {self.eval.metrics}"
            )


def _check_init_from(objective: str | None, init_from: str | None) -> None:
    if objective == "scst" and not init_from:
        raise ConfigError(
            "train.objective='scst' fine-tunes a trained model: set init_from to a model directory "
            "trained with cross-entropy (`captionkit train --init-from MODEL_DIR`)"
        )


def _metric_names(metrics: list[str]) -> list[str]:
    """Canonical metric names ("bleu" -> Bleu_1..Bleu_4) when the evaluation module is installed."""
    if importlib.util.find_spec("captionkit.evaluation.metrics") is None:
        return list(metrics)
    from captionkit.evaluation.metrics import resolve_metrics

    try:
        return resolve_metrics(metrics)
    except ConfigError as exc:
        raise ConfigError(f"eval.metrics: {exc}") from exc


def slug(text: str) -> str:
    """A file-name-safe form of an encoder spec: `clip:openai/clip-vit-base-patch32` -> `clip-openai-clip-vit...`."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-") or "encoder"


def load_run_config(
    config: str | Path | None = None, preset: str | None = None, overrides: list[str] | None = None, **flags: Any
) -> RunConfig:
    """preset <- config file <- flags given on the command line (dataset=, out=, ...) <- `--set` overrides."""
    from captionkit.registry import get_preset

    data: dict[str, Any] = get_preset(preset) if preset else {}
    if config is not None:
        data = merge(data, read_config_file(config))
    data = merge(data, {k: v for k, v in flags.items() if v is not None})
    data = apply_overrides(data, overrides)
    if data.get("init_from"):
        from captionkit.training.init_from import with_init_model

        data = with_init_model(data)  # model architecture and encoder from the model directory, unless given
    _check_init_from(data.get("train", {}).get("objective"), data.get("init_from"))
    for name in ("model", "encoder", "dataset", "out"):
        if name not in data:
            raise ConfigError(
                f"{name}: missing; start from a preset or a config file with a '{name}' entry"
                if name in ("model", "encoder")
                else f"{name}: missing; give --{name} or put '{name}' in the config file"
            )
    return from_dict(RunConfig, data, where="config")
