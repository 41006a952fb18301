"""Convert checkpoints written by the original ClipCap code (rmokady/CLIP_prefix_caption) into ClipCapModels."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from captionkit.errors import CheckpointError
from captionkit.models.clipcap import ClipCapConfig, ClipCapModel

# GPT-2's causal-mask buffers that 2021 checkpoints hold; transformers rebuilds them, they are not weights.
_LEGACY_BUFFER = re.compile(r"^gpt\.transformer\.h\.\d+\.attn\.(bias|masked_bias)$")


def read_clipcap_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The checkpoint's tensors (loaded with weights_only=True: no code in the file is run), legacy buffers dropped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a plain tensor checkpoint"
        raise CheckpointError(f"{path}: cannot be read as a plain PyTorch state_dict ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path}: expected a state_dict (a mapping of names to tensors) as the original ClipCap train.py writes it"
        )
    return {k: v for k, v in state.items() if not _LEGACY_BUFFER.match(k)}


def convert_clipcap_checkpoint(path: str | Path, config: ClipCapConfig) -> ClipCapModel:
    """A ClipCapModel of the architecture stated in `config` (GPT-2 architecture from `config.gpt2` or
    `config.gpt2_config`, never downloaded weights) holding the checkpoint's weights, in eval mode.

    The original's module names are ours (`gpt.*`, `clip_project.*`), so conversion only drops the legacy
    buffers; a checkpoint that does not fit the stated architecture is refused naming the first mismatch.
    """
    state = read_clipcap_state_dict(path)
    model = ClipCapModel.build(config, pretrained=False)
    expected = model.state_dict()
    for key, ours in expected.items():
        if key not in state:
            raise CheckpointError(
                f"{path}: key {key} (shape {tuple(ours.shape)}) is missing from the checkpoint; "
                f"does it match mapping={config.mapping}, num_layers and the GPT-2 config?"
            )
        if state[key].shape != ours.shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(state[key].shape)} in the checkpoint but "
                f"{tuple(ours.shape)} in the stated architecture (mapping={config.mapping}, "
                f"prefix_length={config.prefix_length}, clip_length={config.clip_length}, "
                f"num_layers={config.num_layers}, prefix dim={config.clip_dim}, gpt2={config.gpt2})"
            )
    extra = [key for key in state if key not in expected]  # in the checkpoint's own order
    if extra:
        raise CheckpointError(
            f"{path}: key {extra[0]} (shape {tuple(state[extra[0]].shape)}) is in the checkpoint "
            f"but not in the stated architecture ({len(extra)} such keys); check mapping, "
            "num_layers and the GPT-2 config"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
