"""Resumable checkpoints in RUN_DIR/checkpoints/step-N: model, optimizer, scheduler, tokenizer, per-process RNG
states and the data position. Written into a temporary directory and renamed into place, so a crash mid-write
never leaves a half checkpoint that a later run would load; validated before resuming, with a fallback."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from captionkit.errors import CheckpointError
from captionkit.rundir import CHECKPOINTS as CHECKPOINTS_DIR

log = logging.getLogger(__name__)

STATE_NAME = "trainer_state.json"  # written last: it lists every other file with its size
MODEL_NAME = "model.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
TOKENIZER_DIR = "tokenizer"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def process_file(process_index: int) -> str:
    """Per-process state: RNG states and a digest of that process's copy of the weights."""
    return f"process_{process_index}.pt"


def weights_digest(model: torch.nn.Module) -> str:
    """BLAKE2 of every state-dict tensor's bytes: equal digests mean bit-identical model replicas."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_process_state(path: Path, process_index: int) -> dict[str, Any]:
    return torch.load(path / process_file(process_index), map_location="cpu", weights_only=True)


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) generator states, in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete-looking checkpoint directories, newest (highest step) first."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _fsync_tree(directory: Path) -> None:
    """Flush every file (and the directory entries) to disk before the rename makes the checkpoint visible."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    accelerator: Any,
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    tokenizer: Any,
    state: dict[str, Any],
    keep_last_n: int,
) -> Path:
    """Write RUN_DIR/checkpoints/step-<global_step> from every process (each adds its RNG state); returns its path.

    `model` is the unwrapped model; `state` holds the data position and early-stopping state (JSON data).
    """
    root = run_dir / CHECKPOINTS_DIR
    final = root / f"step-{state['global_step']}"
    tmp = root / f".tmp-step-{state['global_step']}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(
        {"rng": capture_rng(), "weights_digest": weights_digest(model)}, tmp / process_file(accelerator.process_index)
    )
    if accelerator.is_main_process:
        save_model(model, str(tmp / MODEL_NAME))
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_NAME)
        torch.save(scheduler.state_dict(), tmp / SCHEDULER_NAME)
        tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        digests = {read_process_state(tmp, i)["weights_digest"] for i in range(accelerator.num_processes)}
        if len(digests) > 1:  # DDP keeps replicas identical; different ones mean the processes trained apart
            log.error(
                "checkpoint step-%d: the %d processes hold different weights; the run is not one "
                "data-parallel training (on CPUs under torchrun, accelerate needs Accelerator(cpu=True))",
                state["global_step"],
                accelerator.num_processes,
            )
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        record = {**state, "num_processes": accelerator.num_processes, "files": files}
        (tmp / STATE_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        if final.exists():  # the same step written again after a resume: keep exactly one complete copy
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in checkpoint_dirs(run_dir)[keep_last_n:]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def validate_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's state if every file it lists is present with its recorded size, else CheckpointError."""
    state_path = path / STATE_NAME
    if not state_path.is_file():
        raise CheckpointError(f"{state_path}: missing (the checkpoint was not completed)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{state_path}: not valid JSON ({exc})") from exc
    for name in ("global_step", "epoch", "batches_in_epoch", "files"):
        if name not in state:
            raise CheckpointError(f"{state_path}: field {name!r} missing")
    for name, size in state["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if file.stat().st_size != size:
            raise CheckpointError(f"{file}: {file.stat().st_size} bytes, expected {size} (truncated or overwritten)")
    return state


def find_checkpoints(run_dir: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[Path]]:
    """(valid: (path, state) newest first, invalid paths); each invalid one is reported with the reason."""
    valid, invalid = [], []
    for path in checkpoint_dirs(run_dir):
        try:
            valid.append((path, validate_checkpoint(path)))
        except CheckpointError as exc:
            log.warning("checkpoint %s is not usable (%s); falling back to the previous one", path.name, exc)
            invalid.append(path)
    return valid, invalid


def load_checkpoint(path: Path, accelerator: Any, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> None:
    """Load model weights (into the unwrapped `model`), optimizer, scheduler and this process's RNG state.

    Raises CheckpointError for a file that cannot be read, so the caller can fall back to an older checkpoint.
    """
    try:
        missing, unexpected = load_model(model, str(path / MODEL_NAME), strict=False, device=str(accelerator.device))
        if missing or unexpected:
            raise CheckpointError(
                f"{path / MODEL_NAME}: does not match the model being trained: missing "
                f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
        optimizer.load_state_dict(torch.load(path / OPTIMIZER_NAME, map_location="cpu", weights_only=True))
        scheduler.load_state_dict(torch.load(path / SCHEDULER_NAME, map_location="cpu", weights_only=True))
        if (path / process_file(accelerator.process_index)).is_file():
            restore_rng(read_process_state(path, accelerator.process_index)["rng"])
        else:
            log.warning(
                "%s: missing (the checkpoint was written by fewer processes); random numbers will not replay exactly",
                path / process_file(accelerator.process_index),
            )
    except CheckpointError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from exc


def set_aside(path: Path) -> Path:
    """Rename an unusable checkpoint out of the way (kept for inspection, never loaded or counted again)."""
    target = path.with_name(f".invalid-{path.name}")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def remove_partial(run_dir: Path) -> None:
    """Delete temporary directories left by a checkpoint write that a crash interrupted."""
    root = run_dir / CHECKPOINTS_DIR
    if root.is_dir():
        for tmp in root.glob(".tmp-step-*"):
            shutil.rmtree(tmp, ignore_errors=True)
