"""Caption training as an engine job: the model from the registry, its tokenizer from the model class, its batches
from the data module, dev evaluation with early stopping, the best model written as RUN_DIR/model."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from captionkit.config import to_dict, write_resolved_config
from captionkit.errors import ConfigError, DatasetError
from captionkit.models.base import CaptionModel, TextTokenizer, build_model_and_tokenizer
from captionkit.models.model_dir import save_model_dir
from captionkit.rundir import MODEL as MODEL_DIR
from captionkit.rundir import RESOLVED_CONFIG
from captionkit.training import checkpoint as ckpt
from captionkit.training.config import RunConfig
from captionkit.training.data import (
    PairDataset,
    PixelSource,
    caption_pairs,
    feature_source,
    usable_records,
    with_features,
)
from captionkit.training.dev_eval import DevEvaluator
from captionkit.training.engine import Engine, Job, TrainerState
from captionkit.training.init_from import init_tokenizer, load_init_weights
from captionkit.training.objectives import make_objective

log = logging.getLogger(__name__)


def train(config: RunConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train `config.model` on `config.dataset`; returns RUN_DIR/model, the best model directory."""
    run_dir = Path(config.out)
    Engine(CaptionJob(config, resume), config.train, run_dir, progress).run(resume)
    return run_dir / MODEL_DIR


def param_groups(
    model: CaptionModel, weight_decay: float, lr: float, encoder_lr: float | None = None
) -> list[dict[str, Any]]:
    """Trainable parameters only (frozen ones get no optimizer state); no weight decay on biases and norm scales;
    a fine-tuned image encoder at `encoder_lr` when given (a pretrained encoder wants smaller steps than a new
    decoder: Show-Attend-Tell fine-tunes VGG at 1e-4 beside a 4e-4 decoder)."""
    trainable = {id(p) for p in model.trainable_parameters()}
    named = [(n, p) for n, p in model.named_parameters() if id(p) in trainable]
    if not named:
        raise ConfigError(f"model {model.model_type!r} has no trainable parameters: nothing to train")
    groups = []
    for in_encoder, group_lr in ((False, lr), (True, encoder_lr or lr)):
        part = [p for n, p in named if n.startswith(model.encoder_prefix) == in_encoder]
        groups += [
            {"params": [p for p in part if p.dim() >= 2], "weight_decay": weight_decay, "lr": group_lr},
            {"params": [p for p in part if p.dim() < 2], "weight_decay": 0.0, "lr": group_lr},
        ]
    return [g for g in groups if g["params"]]


class CaptionJob(Job):
    def __init__(self, config: RunConfig, resume: bool) -> None:
        self.config = config
        self.tc = config.train
        self.run_dir = Path(config.out)
        self.resume = resume
        self.evaluator: DevEvaluator | None = None

    def setup(self, engine: Engine, checkpoint: Path | None) -> None:
        from captionkit.data.formats import load_dataset

        acc = engine.accelerator
        dataset = load_dataset(self.config.dataset, self.config.dataset_format, **self.config.dataset_options)
        train_records = usable_records(dataset, "train")
        _require(train_records, self.config.dataset)
        dev_records = usable_records(dataset, self.config.eval.split)
        self.init_from = self.config.init_from if checkpoint is None else None  # a checkpoint has the run's weights
        if checkpoint is not None:
            saved_tokenizer = _load_tokenizer(checkpoint)
        else:
            saved_tokenizer = init_tokenizer(self.init_from) if self.init_from else None
        model, self.tokenizer = build_model_and_tokenizer(
            self.config.model,
            [c for r in train_records for c in r.captions],
            saved_tokenizer,
            pretrained=self.init_from is None,
        )
        if self.init_from:
            load_init_weights(model, self.init_from)
            log.info("weights from %s", self.init_from)
        source = self._source(model, dataset, train_records + dev_records, acc)
        train_records = _require(with_features(train_records, source, "train"), self.config.dataset)
        dev_records = with_features(dev_records, source, self.config.eval.split)
        self.model, self.saved = model, self.tokenizer
        self.objective = make_objective(self.config, self.tokenizer, train_records)
        self.train_data = self.objective.train_data(train_records, source)
        if dev_records:
            dev_pairs = PairDataset(caption_pairs(dev_records, self.tokenizer, self.tc.max_caption_tokens), source)
            self.evaluator = DevEvaluator(
                acc, dev_records, dev_pairs, source, self.tokenizer, self.config.eval, self.tc.num_workers
            )
        else:
            log.warning("no %s images: no evaluation, the last model is kept", self.config.eval.split)

    def _source(self, model: CaptionModel, dataset: Any, records: list, acc: Any) -> Any:
        if model.input_kind == "pixels":
            return PixelSource(records, model.pixel_preprocess)
        with acc.main_process_first():  # the main process extracts; the others then reuse
            return feature_source(
                dataset,
                records,
                self.config.encoder,
                self.config.features,
                self.run_dir,
                acc.device,
                self.tc.num_workers,
            )

    def param_groups(self, config: Any) -> list[dict[str, Any]]:
        return param_groups(self.model, self.tc.weight_decay, self.tc.lr, self.tc.encoder_lr)

    def started(self) -> None:
        """resolved_config.json is written only now: a run that failed to start leaves no sign of having started."""
        previous = self.run_dir / RESOLVED_CONFIG
        if self.resume and previous.is_file():
            old = json.loads(previous.read_text(encoding="utf-8"))
            changed = sorted(k for k, v in to_dict(self.config).items() if old.get(k) != v)
            if changed:
                log.warning(
                    "resuming with a changed config (sections: %s); see %s for the old one",
                    ", ".join(changed),
                    previous,
                )
        write_resolved_config(self.config, self.run_dir, RESOLVED_CONFIG)

    def start_fields(self) -> dict[str, Any]:
        return {"init_from": self.init_from}

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"tokenizer_type": self.tokenizer.tokenizer_type}

    def evaluate(self, engine: Engine, state: TrainerState, train_stats: dict[str, float], epoch_end: bool) -> None:
        """Dev scores (early stopping, best model) and the epoch's mean objective statistics, logged together."""
        if not epoch_end:
            return
        if self.evaluator is None:
            super().evaluate(engine, state, train_stats, epoch_end)
            return
        logger = engine.logger
        scores, examples = self.evaluator(engine.unwrapped)
        name = self.tc.early_stopping_metric
        wanted = name if name == "dev_loss" else f"dev_{name}"
        key = next((k for k in scores if k.lower() == wanted.lower()), None)  # "cider" names dev_CIDEr
        if key is None:
            log.warning("early stopping metric %s was not computed; using dev_loss", name)
            key = "dev_loss"
        value = scores[key]
        lower_is_better = key == "dev_loss"
        improved = state.best is None or (value < state.best if lower_is_better else value > state.best)
        if improved and math.isfinite(value):
            state.best, state.best_step, state.bad_evals = value, state.global_step, 0
            if engine.accelerator.is_main_process:
                self._save_model(engine, state, scores)
        else:
            state.bad_evals += 1
        patience = self.tc.early_stopping_patience
        stop = patience is not None and state.bad_evals >= patience and not state.finished
        train = {f"train_{k}": v for k, v in train_stats.items()}
        logger.event(
            "epoch",
            epoch=state.epoch,
            step=state.global_step,
            **train,
            **scores,
            best=state.best,
            improved=improved,
            examples=examples,
        )
        logger.scalars(state.global_step, {f"dev/{k[4:]}": v for k, v in scores.items()})
        logger.message(
            " ".join(
                [f"epoch {state.epoch} step {state.global_step}:"]
                + [f"{k}={v:.4f}" for k, v in {**train, **scores}.items()]
            )
        )
        if stop:
            state.finished = True
            logger.event(
                "early_stop",
                epoch=state.epoch,
                step=state.global_step,
                metric=key,
                patience=patience,
                best=state.best,
                best_step=state.best_step,
            )
            log.info("early stopping: %s has not improved for %d evaluations", key, patience)

    def finish(self, engine: Engine, state: TrainerState) -> None:
        if engine.accelerator.is_main_process and not (self.run_dir / MODEL_DIR).is_dir():
            self._save_model(engine, state, {})  # no dev split (or no finite dev score): the last model is the result

    def _save_model(self, engine: Engine, state: TrainerState, scores: dict[str, float]) -> None:
        save_model_dir(
            self.run_dir / MODEL_DIR,
            engine.unwrapped,
            self.tokenizer,
            self.config.encoder,
            extra={"training": {"epoch": state.epoch, "step": state.global_step, **scores}},
        )


def _require(records: list, dataset: str) -> list:
    if not records:
        raise DatasetError(
            f"{dataset}: no usable training images (train split empty, or every image missing or "
            "unreadable); run `captionkit data check` on it"
        )
    return records


def _load_tokenizer(path: Path) -> TextTokenizer | None:
    """The tokenizer saved in a checkpoint (so a resumed run keeps its vocabulary even if the data changed)."""
    directory = path / ckpt.TOKENIZER_DIR
    meta = path / ckpt.STATE_NAME
    tokenizer_type = json.loads(meta.read_text(encoding="utf-8")).get("tokenizer_type")
    if tokenizer_type is None or not directory.is_dir():
        return None
    from captionkit.registry import get_tokenizer_class

    return get_tokenizer_class(tokenizer_type).from_pretrained(str(directory))
