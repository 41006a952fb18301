"""The training loop on Hugging Face accelerate. It knows nothing about the model it trains (minGPT's trainer):
the model comes from the registry, its tokenizer from the model class, its batches from the data module."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor

from captionkit.config import to_dict, write_resolved_config
from captionkit.errors import CheckpointError, DatasetError
from captionkit.models.base import CaptionModel, TextTokenizer, build_model
from captionkit.models.model_dir import save_model_dir
from captionkit.training import checkpoint as ckpt
from captionkit.training.config import RunConfig, TrainConfig
from captionkit.training.data import (
    PairDataset,
    PixelSource,
    caption_pairs,
    epoch_seed,
    feature_source,
    train_loader,
    usable_records,
    with_features,
)
from captionkit.training.dev_eval import DevEvaluator
from captionkit.training.init_from import init_tokenizer, load_init_weights
from captionkit.training.logging import LOG_NAME, RunLogger, Throughput, truncate_jsonl
from captionkit.training.objectives import make_objective

log = logging.getLogger(__name__)

MODEL_DIR = "model"


def make_accelerator(config: TrainConfig) -> Accelerator:
    """CPU unless a GPU is present; under torchrun on CPU `cpu=True` is what makes the processes one run.
    On the CPU, bf16 runs as accelerate's bfloat16 autocast (CPUs with AVX-512 BF16 or AMX gain from it); fp16 needs
    a GPU."""
    has_gpu = torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    precision = config.mixed_precision if has_gpu or config.mixed_precision == "bf16" else "no"
    if precision != config.mixed_precision:
        log.warning("train.mixed_precision=%s needs a GPU; training in fp32 on CPU", config.mixed_precision)
    return Accelerator(cpu=not has_gpu, mixed_precision=precision, gradient_accumulation_steps=config.grad_accum_steps)


def build_model_and_tokenizer(
    model_data: dict[str, Any],
    train_captions: list[str],
    tokenizer: TextTokenizer | None = None,
    pretrained: bool = True,
) -> tuple[CaptionModel, TextTokenizer]:
    """The model family builds its tokenizer from the training captions (or a saved one is reused), the
    family fills in what the tokenizer decides (e.g. vocab_size), then the model is built by name
    (`pretrained=False`: no pretrained parts fetched, for weights that are loaded afterwards)."""
    from captionkit.config import from_dict
    from captionkit.registry import get_model_class

    cls = get_model_class(model_data["type"])
    config = from_dict(
        cls.config_class, {k: v for k, v in model_data.items() if k != "type"}, where=f"model ({cls.model_type})"
    )
    if tokenizer is None:
        if not hasattr(cls, "build_tokenizer"):
            raise TypeError(f"model type {cls.model_type!r} has no build_tokenizer(config, train_captions) classmethod")
        tokenizer = cls.build_tokenizer(config, train_captions)
    if hasattr(cls, "config_for_tokenizer"):
        config = cls.config_for_tokenizer(config, tokenizer)
    return build_model({"type": cls.model_type, **to_dict(config)}, pretrained=pretrained), tokenizer


ENCODER_PREFIX = "image_encoder."  # parameters of an encoder a model fine-tunes end to end (input_kind "pixels")


def param_groups(
    model: CaptionModel, weight_decay: float, lr: float, encoder_lr: float | None = None
) -> list[dict[str, Any]]:
    """Trainable parameters only (frozen ones get no optimizer state); no weight decay on biases and norm scales;
    a fine-tuned image encoder at `encoder_lr` when given (a pretrained encoder wants smaller steps than a new
    decoder: Show-Attend-Tell fine-tunes VGG at 1e-4 beside a 4e-4 decoder)."""
    trainable = {id(p) for p in model.trainable_parameters()}
    named = [(n, p) for n, p in model.named_parameters() if id(p) in trainable]
    if not named:
        raise ValueError(f"model {model.model_type!r} has no trainable parameters: nothing to train")
    groups = []
    for in_encoder, group_lr in ((False, lr), (True, encoder_lr or lr)):
        part = [p for n, p in named if n.startswith(ENCODER_PREFIX) == in_encoder]
        groups += [
            {"params": [p for p in part if p.dim() >= 2], "weight_decay": weight_decay, "lr": group_lr},
            {"params": [p for p in part if p.dim() < 2], "weight_decay": 0.0, "lr": group_lr},
        ]
    return [g for g in groups if g["params"]]


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0, then linear or cosine decay to 0 at `total_steps`, or constant."""
    warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if config.schedule == "linear":
            return 1.0 - progress
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@contextlib.contextmanager
def _quiet_unless_main(accelerator: Accelerator) -> Iterator[None]:
    """Other processes log only errors, so messages appear once."""
    logger = logging.getLogger("captionkit")
    level = logger.level
    if not accelerator.is_main_process:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if not resume and ckpt.checkpoint_dirs(run_dir):
        raise CheckpointError(
            f"{run_dir / ckpt.CHECKPOINTS_DIR}: this run directory already holds checkpoints; "
            "pass --resume to continue it or choose another --out"
        )


def _prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool) -> None:
    previous = run_dir / "resolved_config.json"
    if resume and previous.is_file():
        old = json.loads(previous.read_text(encoding="utf-8"))
        changed = sorted(k for k, v in to_dict(config).items() if old.get(k) != v)
        if changed:
            log.warning(
                "resuming with a changed config (sections: %s); see %s for the old one", ", ".join(changed), previous
            )
    ckpt.remove_partial(run_dir)
    write_resolved_config(config, run_dir)


@dataclasses.dataclass
class TrainerState:
    """The data position and early-stopping state a checkpoint stores (JSON)."""

    epoch: int = 0  # epochs completed
    batches_in_epoch: int = 0  # micro-batches of the current epoch already trained (this process)
    global_step: int = 0  # optimizer updates
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    finished: bool = False


def train(config: RunConfig, resume: bool = False) -> Path:
    """Train `config.model` on `config.dataset`; returns RUN_DIR/model, the best model directory."""
    accelerator = make_accelerator(config.train)
    try:
        with _quiet_unless_main(accelerator):
            return _Trainer(config, accelerator).run(resume)
    finally:
        accelerator.end_training()


class _Trainer:
    def __init__(self, config: RunConfig, accelerator: Accelerator) -> None:
        self.config = config
        self.tc = config.train
        self.accelerator = accelerator
        self.run_dir = Path(config.out)

    def run(self, resume: bool) -> Path:
        acc, tc = self.accelerator, self.tc
        _check_run_dir(self.run_dir, resume)  # every process, so all of them stop on a refusal
        if acc.is_main_process:
            _prepare_run_dir(self.run_dir, self.config, resume)
        acc.wait_for_everyone()
        checkpoints, invalid = ckpt.find_checkpoints(self.run_dir) if resume else ([], [])
        acc.wait_for_everyone()  # every process has listed them before unusable ones are moved aside
        if acc.is_main_process:
            for path in invalid:
                ckpt.set_aside(path)
        if resume and not checkpoints:
            log.warning("--resume: no usable checkpoint in %s; starting from the beginning", self.run_dir)
        set_seed(tc.seed)

        from captionkit.data.formats import load_dataset

        dataset = load_dataset(self.config.dataset, self.config.dataset_format, **self.config.dataset_options)
        train_records = usable_records(dataset, "train")
        _require(train_records, self.config.dataset)
        dev_records = usable_records(dataset, self.config.eval.split)
        init_from = self.config.init_from if not checkpoints else None  # a checkpoint has the run's own weights
        if checkpoints:
            saved_tokenizer = _load_tokenizer(checkpoints[0][0])
        else:
            saved_tokenizer = init_tokenizer(init_from) if init_from else None
        model, self.tokenizer = build_model_and_tokenizer(
            self.config.model,
            [c for r in train_records for c in r.captions],
            saved_tokenizer,
            pretrained=init_from is None,
        )
        if init_from:
            load_init_weights(model, init_from)
            log.info("weights from %s", init_from)
        source = self._source(model, dataset, train_records + dev_records)
        train_records = _require(with_features(train_records, source, "train"), self.config.dataset)
        dev_records = with_features(dev_records, source, self.config.eval.split)

        self.objective = make_objective(self.config, self.tokenizer, train_records)
        items, collate, groups, per_group = self.objective.train_data(train_records, source)
        loader, sampler, generator = train_loader(
            items, tc.batch_size, tc.seed, tc.num_workers, collate, groups, per_group
        )
        optimizer = torch.optim.AdamW(
            param_groups(model, tc.weight_decay, tc.lr, tc.encoder_lr), lr=tc.lr, betas=tuple(tc.adam_betas)
        )
        model, optimizer, loader = acc.prepare(model, optimizer, loader)
        steps_per_epoch = math.ceil(len(loader) / tc.grad_accum_steps)
        total_steps = (
            steps_per_epoch * tc.epochs if tc.max_steps is None else min(tc.max_steps, steps_per_epoch * tc.epochs)
        )
        # Not given to accelerate.prepare: its wrapper steps the schedule once per process per update; the
        # schedule here counts optimizer updates, whatever the number of processes.
        scheduler = make_scheduler(optimizer, tc, total_steps)
        self.unwrapped = acc.unwrap_model(model)
        # Setup may have drawn random numbers (feature extraction does, reusing a cache does not): the loop's
        # stream starts from the seed either way, and a resumed run replaces it with the checkpoint's.
        set_seed(tc.seed)
        state = self._resume(checkpoints, optimizer, scheduler)
        evaluator = None
        if dev_records:
            dev_pairs = PairDataset(caption_pairs(dev_records, self.tokenizer, tc.max_caption_tokens), source)
            evaluator = DevEvaluator(
                acc, dev_records, dev_pairs, source, self.tokenizer, self.config.eval, tc.num_workers
            )
        else:
            log.warning("no %s images: no evaluation, the last model is kept", self.config.eval.split)
        self.logger = RunLogger(self.run_dir, acc.is_main_process, total_steps, state.global_step)
        if self.resumed_from is not None:
            self.logger.event(
                "resume",
                epoch=state.epoch,
                step=state.global_step,
                batches_in_epoch=state.batches_in_epoch,
                path=str(self.resumed_from),
            )
        self.logger.event(
            "start",
            epoch=state.epoch,
            step=state.global_step,
            total_steps=total_steps,
            objective=tc.objective,
            train_items=len(items),
            init_from=init_from,
            processes=acc.num_processes,
            global_batch=tc.batch_size * acc.num_processes * tc.grad_accum_steps,
        )
        try:
            self._loop(state, model, optimizer, scheduler, loader, sampler, generator, evaluator)
        finally:
            self.logger.close()
        return self.run_dir / MODEL_DIR

    def _source(self, model: CaptionModel, dataset: Any, records: list) -> Any:
        if getattr(model, "input_kind", "features") == "pixels":
            return PixelSource(records, model.image_encoder.preprocess)
        with self.accelerator.main_process_first():  # the main process extracts; the others then reuse
            return feature_source(
                dataset,
                records,
                self.config.encoder,
                self.config.features,
                self.run_dir,
                self.accelerator.device,
                self.tc.num_workers,
            )

    def _resume(self, checkpoints: list, optimizer: Any, scheduler: Any) -> TrainerState:
        self.resumed_from = None
        state, unreadable = TrainerState(), []
        for path, saved in checkpoints:
            try:
                ckpt.load_checkpoint(path, self.accelerator, self.unwrapped, optimizer, scheduler)
            except CheckpointError as exc:
                log.warning("%s; falling back to the previous checkpoint", exc)
                unreadable.append(path)
                continue
            if saved.get("num_processes") != self.accelerator.num_processes:
                log.warning(
                    "%s was written by %s processes, this run has %d: the data order changes",
                    path,
                    saved.get("num_processes"),
                    self.accelerator.num_processes,
                )
            state = TrainerState(**{f.name: saved[f.name] for f in dataclasses.fields(TrainerState) if f.name in saved})
            if self.accelerator.is_main_process:
                # drop what the killed run logged after this checkpoint: it is about to be redone
                truncate_jsonl(
                    self.run_dir / LOG_NAME,
                    lambda e, step=state.global_step: e.get("step") is None or e["step"] <= step,
                )
            log.info("resumed from %s (epoch %d, step %d)", path, state.epoch, state.global_step)
            self.resumed_from = path
            break
        self.accelerator.wait_for_everyone()  # nobody reads a checkpoint any more when it is moved aside
        if self.accelerator.is_main_process:
            for path in unreadable:
                ckpt.set_aside(path)
        return state

    def _loop(
        self,
        state: TrainerState,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        loader: Any,
        sampler: Any,
        generator: torch.Generator,
        evaluator: DevEvaluator | None,
    ) -> None:
        acc, tc = self.accelerator, self.tc
        params = self.unwrapped.trainable_parameters()
        window, speed = _Means(acc.device), Throughput()
        epoch_stats = _Means(acc.device)  # objective statistics over the epoch (train_reward, ...) for its event
        while not state.finished and state.epoch < tc.epochs:
            sampler.set_epoch(state.epoch)
            loader.set_epoch(state.epoch)
            generator.manual_seed(epoch_seed(tc.seed, state.epoch))  # DataLoader worker seeds, per epoch
            epoch_loader = acc.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
            model.train()
            speed.resume()
            for batch in epoch_loader:
                with acc.accumulate(model):
                    loss, stats = self.objective.loss(model, self.unwrapped, batch)
                    acc.backward(loss)
                    if acc.sync_gradients and tc.max_grad_norm:
                        acc.clip_grad_norm_(params, tc.max_grad_norm)
                    optimizer.step()
                    if acc.sync_gradients and not acc.optimizer_step_was_skipped:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                state.batches_in_epoch += 1
                window.add({"loss": loss.detach(), **stats})  # tensors: no device sync on every batch
                epoch_stats.add(stats)
                speed.add(batch["features"].size(0) * acc.num_processes)
                if not acc.sync_gradients:
                    continue
                state.global_step += 1  # one optimizer update
                if state.global_step % tc.log_every_steps == 0:
                    means = window.means(acc)
                    self._log_step(state, means.pop("loss"), scheduler.get_last_lr()[0], speed.rate(), means)
                    speed.reset()
                self.logger.progress(1)
                if tc.max_steps is not None and state.global_step >= tc.max_steps:
                    break
                every = tc.checkpoint_every_steps
                if every and state.global_step % every == 0 and state.batches_in_epoch < len(loader):
                    self._checkpoint(state, optimizer, scheduler)  # (the epoch end writes its own)
                    speed.resume()  # samples/s measures training, not checkpoint writing
            if state.batches_in_epoch >= len(loader):
                state.epoch += 1
                state.batches_in_epoch = 0
            reached_max = tc.max_steps is not None and state.global_step >= tc.max_steps
            state.finished = reached_max or state.epoch >= tc.epochs
            if state.epoch % tc.eval_every_epochs == 0 or state.finished:
                self._evaluate(state, evaluator, epoch_stats.means(acc))
            self._checkpoint(state, optimizer, scheduler)
        if acc.is_main_process and not (self.run_dir / MODEL_DIR).is_dir():
            self._save_model(state, {})  # no dev split (or no finite dev score): the last model is the result
        acc.wait_for_everyone()
        self.logger.event("end", epoch=state.epoch, step=state.global_step, best=state.best, best_step=state.best_step)

    def _log_step(
        self, state: TrainerState, loss: float, lr: float, samples_per_s: float, stats: dict[str, float]
    ) -> None:
        self.logger.event(
            "step",
            epoch=state.epoch,
            step=state.global_step,
            train_loss=loss,
            lr=lr,
            samples_per_s=samples_per_s,
            **{f"train_{k}": v for k, v in stats.items()},
        )
        self.logger.progress(0, loss=loss, samples_per_s=samples_per_s, **stats)
        self.logger.scalars(
            state.global_step,
            {
                "train/loss": loss,
                "train/lr": lr,
                "train/samples_per_s": samples_per_s,
                **{f"train/{k}": v for k, v in stats.items()},
            },
        )

    def _evaluate(self, state: TrainerState, evaluator: DevEvaluator | None, train_stats: dict[str, float]) -> None:
        """Dev scores (early stopping, best model) and the epoch's mean objective statistics, logged together."""
        if evaluator is None:
            if train_stats:
                self.logger.event(
                    "epoch",
                    epoch=state.epoch,
                    step=state.global_step,
                    **{f"train_{k}": v for k, v in train_stats.items()},
                )
            return
        scores, examples = evaluator(self.unwrapped)
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
            if self.accelerator.is_main_process:
                self._save_model(state, scores)
        else:
            state.bad_evals += 1
        patience = self.tc.early_stopping_patience
        stop = patience is not None and state.bad_evals >= patience and not state.finished
        train = {f"train_{k}": v for k, v in train_stats.items()}
        self.logger.event(
            "epoch",
            epoch=state.epoch,
            step=state.global_step,
            **train,
            **scores,
            best=state.best,
            improved=improved,
            examples=examples,
        )
        self.logger.scalars(state.global_step, {f"dev/{k[4:]}": v for k, v in scores.items()})
        self.logger.message(
            " ".join(
                [f"epoch {state.epoch} step {state.global_step}:"]
                + [f"{k}={v:.4f}" for k, v in {**train, **scores}.items()]
            )
        )
        if stop:
            state.finished = True
            self.logger.event(
                "early_stop",
                epoch=state.epoch,
                step=state.global_step,
                metric=key,
                patience=patience,
                best=state.best,
                best_step=state.best_step,
            )
            log.info("early stopping: %s has not improved for %d evaluations", key, patience)
        self.unwrapped.train()

    def _save_model(self, state: TrainerState, scores: dict[str, float]) -> None:
        save_model_dir(
            self.run_dir / MODEL_DIR,
            self.unwrapped,
            self.tokenizer,
            self.config.encoder,
            extra={"training": {"epoch": state.epoch, "step": state.global_step, **scores}},
        )

    def _checkpoint(self, state: TrainerState, optimizer: Any, scheduler: Any) -> None:
        path = ckpt.save_checkpoint(
            self.accelerator,
            self.run_dir,
            self.unwrapped,
            optimizer,
            scheduler,
            self.tokenizer,
            {**dataclasses.asdict(state), "tokenizer_type": self.tokenizer.tokenizer_type},
            self.tc.keep_last_n,
        )
        self.logger.event("checkpoint", epoch=state.epoch, step=state.global_step, path=str(path))


class _Means:
    """Running sums of scalar tensors (loss, objective statistics) kept on the device; `means` averages them over
    the batches added and over processes, then starts again."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, torch.zeros((), device=self.device)) + value.detach().float()
        self.count += 1

    def means(self, accelerator: Accelerator) -> dict[str, float]:
        out = {}
        if self.sums and self.count:
            names = sorted(self.sums)
            stacked = accelerator.reduce(torch.stack([self.sums[n] for n in names]) / self.count, "mean")
            out = dict(zip(names, stacked.tolist()))
        self.sums, self.count = {}, 0
        return out


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
