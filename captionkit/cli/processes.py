"""The processes of a launch (torchrun / accelerate launch, or one plain process): rank, count, device, barrier."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from captionkit.models.devices import default_device, resolve_device


@dataclass
class Processes:
    rank: int
    world_size: int
    device: torch.device
    barrier: Callable[[], None]

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def launch_processes(device: str | None = None) -> Processes:
    """One plain process (no process group) unless launched by torchrun/accelerate (WORLD_SIZE > 1); then
    accelerate's PartialState joins the group, on CPU with gloo when there is no GPU (without cpu=True the
    processes would each run alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes(0, 1, resolve_device(device), lambda: None)
    from captionkit.errors import require

    accelerate = require("accelerate", extra="train")
    state = accelerate.PartialState(cpu=default_device().type == "cpu")
    device = state.device if state.device.type != "cpu" else torch.device("cpu")  # not "cpu:0": safetensors refuses it
    return Processes(state.process_index, state.num_processes, device, state.wait_for_everyone)
