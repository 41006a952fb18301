"""The one training loop, on Hugging Face accelerate (minGPT's trainer): prepare, accumulate, backward, clip, step,
schedule, log, checkpoint and resume, written once. A job (caption training, contrastive CLIP pretraining, encoder
pretraining as a classifier) supplies the model, its data, its objective and its evaluation; the engine knows
nothing else about it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch import Tensor, nn

from captionkit.errors import CheckpointError, ConfigError
from captionkit.models.devices import default_device
from captionkit.training import checkpoint as ckpt
from captionkit.training.config import TrainConfig
from captionkit.training.data import epoch_seed, train_loader
from captionkit.training.logging import LOG_NAME, RunLogger, Throughput, truncate_jsonl
from captionkit.training.objectives import Objective

log = logging.getLogger(__name__)


def make_accelerator(config: TrainConfig) -> Accelerator:
    """On the default device (a GPU when there is one, else the CPU: under torchrun on CPU `cpu=True` is what makes
    the processes one run). bf16 autocast runs on both (CPUs with AVX-512 BF16 or AMX gain from it); fp16 needs a
    GPU."""
    on_cpu = default_device().type == "cpu"
    precision = config.mixed_precision
    if on_cpu and precision == "fp16":
        log.warning("train.mixed_precision=fp16 needs a GPU; training in fp32 on CPU (bf16 works on CPU)")
        precision = "no"
    # accelerate keeps its settings in a process-wide singleton that refuses another precision: start from a clean
    # one (the process group, PartialState, stays), whatever an earlier Accelerator in this process left behind
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=on_cpu, mixed_precision=precision, gradient_accumulation_steps=config.grad_accum_steps)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 (`warmup_steps`, or `warmup_ratio` of all steps), then linear or cosine decay to 0 at
    `total_steps`, or constant."""
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


def param_groups(named: list[tuple[str, nn.Parameter]], weight_decay: float, lr: float) -> list[dict[str, Any]]:
    """Trainable parameters only (frozen ones get no optimizer state); no weight decay on biases and norm scales."""
    named = [(n, p) for n, p in named if p.requires_grad]
    if not named:
        raise ConfigError("the model has no trainable parameters: nothing to train")
    groups = [
        {"params": [p for _, p in named if p.dim() >= 2], "weight_decay": weight_decay, "lr": lr},
        {"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0, "lr": lr},
    ]
    return [g for g in groups if g["params"]]


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


class Job:
    """What one kind of training supplies. `setup` builds `model` (an nn.Module whose forward the objective calls),
    `objective`, `train_data` = (dataset, collate, item groups, items per group per epoch) and `saved` (written
    into every checkpoint beside the weights, e.g. the tokenizer: anything with `save_pretrained(dir)`)."""

    model: nn.Module
    objective: Objective
    train_data: tuple[Any, Any, Any, Any]
    saved: Any
    shuffle: bool = True  # False: the dataset itself orders the items (a position-addressed stream)

    def setup(self, engine: Engine, checkpoint: Path | None) -> None:
        """Build the model, data and objective; `checkpoint` is the one the run resumes from (None: a new run)."""
        raise NotImplementedError

    def param_groups(self, config: TrainConfig) -> list[dict[str, Any]]:
        return param_groups(list(self.model.named_parameters()), config.weight_decay, config.lr)

    def started(self) -> None:
        """Training really starts (main process only): write what marks the run directory as started."""

    def start_fields(self) -> dict[str, Any]:
        """Extra fields of the log's "start" event."""
        return {}

    def checkpoint_fields(self) -> dict[str, Any]:
        """Extra JSON fields of every checkpoint's state."""
        return {}

    def evaluate(self, engine: Engine, state: TrainerState, train_stats: dict[str, float], epoch_end: bool) -> None:
        """At an epoch's end (every `eval_every_epochs`, and the last) and before a mid-epoch checkpoint: evaluate
        and log (may set `state.finished` to stop early). By default the epoch's mean objective statistics."""
        if epoch_end and train_stats:
            engine.logger.event(
                "epoch", epoch=state.epoch, step=state.global_step, **{f"train_{k}": v for k, v in train_stats.items()}
            )

    def finish(self, engine: Engine, state: TrainerState) -> None:
        """After the last step, on every process: write the result (the main process writes files)."""


class Engine:
    """Runs a Job under `config` (TrainConfig: the loop's settings) with RUN_DIR = `run_dir` (checkpoints,
    log.jsonl, TensorBoard). `accelerator`, `logger` and `unwrapped` (the model without its DDP wrapper) are for
    the job's hooks."""

    def __init__(self, job: Job, config: TrainConfig, run_dir: str | Path, progress: bool = True) -> None:
        self.job = job
        self.tc = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.accelerator: Accelerator | None = None
        self.logger: RunLogger | None = None
        self.unwrapped: nn.Module | None = None
        self.resumed_from: Path | None = None

    def run(self, resume: bool) -> None:
        """Train from the start, or with `resume` from the newest valid checkpoint in RUN_DIR."""
        self.accelerator = make_accelerator(self.tc)
        try:
            with _quiet_unless_main(self.accelerator):
                self._run(resume)
        finally:
            self.accelerator.end_training()
            # accelerate keeps its settings in a process-wide singleton: forget them (the process group stays), so
            # a later job in this process may use another precision (clip pretrain in bf16, then caption training)
            AcceleratorState._reset_state(reset_partial_state=False)

    def _run(self, resume: bool) -> None:
        acc, tc, job = self.accelerator, self.tc, self.job
        if not resume and ckpt.checkpoint_dirs(self.run_dir):  # every process, so all of them stop on a refusal
            raise CheckpointError(
                f"{self.run_dir / ckpt.CHECKPOINTS_DIR}: this run directory already holds checkpoints; "
                "resume it or choose another output directory"
            )
        if acc.is_main_process:
            ckpt.remove_partial(self.run_dir)
        acc.wait_for_everyone()
        checkpoints, invalid = ckpt.find_checkpoints(self.run_dir) if resume else ([], [])
        acc.wait_for_everyone()  # every process has listed them before unusable ones are moved aside
        if acc.is_main_process:
            for path in invalid:
                ckpt.set_aside(path)
        if resume and not checkpoints:
            log.warning("resume: no usable checkpoint in %s; starting from the beginning", self.run_dir)
        set_seed(tc.seed)
        job.setup(self, checkpoints[0][0] if checkpoints else None)

        dataset, collate, groups, per_group = job.train_data
        loader, sampler, generator = train_loader(
            dataset, tc.batch_size, tc.seed, tc.num_workers, collate, groups, per_group, shuffle=job.shuffle
        )
        optimizer = torch.optim.AdamW(job.param_groups(tc), lr=tc.lr, betas=tuple(tc.adam_betas))
        model, optimizer, loader = acc.prepare(job.model, optimizer, loader)
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
        if acc.is_main_process:
            job.started()
        self.logger = RunLogger(self.run_dir, acc.is_main_process, total_steps, state.global_step, self.progress)
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
            objective=job.objective.name,
            train_items=len(dataset),
            processes=acc.num_processes,
            global_batch=tc.batch_size * acc.num_processes * tc.grad_accum_steps,
            **job.start_fields(),
        )
        try:
            self._loop(state, model, optimizer, scheduler, loader, sampler, generator)
            job.finish(self, state)
            acc.wait_for_everyone()
            self.logger.event(
                "end", epoch=state.epoch, step=state.global_step, best=state.best, best_step=state.best_step
            )
        finally:
            self.logger.close()

    def _resume(self, checkpoints: list, optimizer: Any, scheduler: Any) -> TrainerState:
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
    ) -> None:
        acc, tc, objective = self.accelerator, self.tc, self.job.objective
        params = [p for p in self.unwrapped.parameters() if p.requires_grad]
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
                objective.set_step(state.global_step)
                with acc.accumulate(model):
                    loss, stats = objective.loss(model, self.unwrapped, batch)
                    acc.backward(loss)
                    if acc.sync_gradients and tc.max_grad_norm:
                        acc.clip_grad_norm_(params, tc.max_grad_norm)
                    optimizer.step()
                    if acc.sync_gradients and not acc.optimizer_step_was_skipped:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                state.batches_in_epoch += 1
                window.add({"loss": loss.detach(), **stats})  # tensors: no device sync on every batch
                epoch_stats.add({"loss": loss.detach(), **stats})
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
                    self.job.evaluate(self, state, {}, epoch_end=False)
                    model.train()
                    self._checkpoint(state, optimizer, scheduler)  # (the epoch end writes its own)
                    speed.resume()  # samples/s measures training, not evaluation or checkpoint writing
            if state.batches_in_epoch >= len(loader):
                state.epoch += 1
                state.batches_in_epoch = 0
            reached_max = tc.max_steps is not None and state.global_step >= tc.max_steps
            state.finished = reached_max or state.epoch >= tc.epochs
            if state.epoch % tc.eval_every_epochs == 0 or state.finished:
                self.job.evaluate(self, state, epoch_stats.means(acc), epoch_end=True)
                model.train()
            self._checkpoint(state, optimizer, scheduler)

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

    def _checkpoint(self, state: TrainerState, optimizer: Any, scheduler: Any) -> None:
        path = ckpt.save_checkpoint(
            self.accelerator,
            self.run_dir,
            self.unwrapped,
            optimizer,
            scheduler,
            self.job.saved,
            {**dataclasses.asdict(state), **self.job.checkpoint_fields()},
            self.tc.keep_last_n,
        )
        self.logger.event("checkpoint", epoch=state.epoch, step=state.global_step, path=str(path))


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
