"""Helpers for tests/lstm: tiny LSTM-captioner configs and fixed random data."""

from __future__ import annotations

from collections.abc import Callable

import torch

from captionkit.models.base import IGNORE_INDEX, CaptionModel
from captionkit.models.show_attend_tell import ShowAttendTell, ShowAttendTellConfig
from captionkit.models.show_tell import ShowTellMerge, ShowTellMergeConfig

VOCAB = 24  # ids 0..3 are <pad> <bos> <eos> <unk>, as in captionkit.data.text.WordVocab
EOS = 2
GRID = 9  # L: a 3 x 3 grid for the attention model
CHANNELS = 8  # C of the grid / feature_dim of the merge model's image vector is FEATURE
FEATURE = 16


def merge_model(**overrides) -> ShowTellMerge:
    config = ShowTellMergeConfig(
        vocab_size=VOCAB,
        feature_dim=FEATURE,
        embed_dim=16,
        hidden_dim=24,
        decoder_dim=20,
        dropout=0.0,
        min_word_count=1,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return ShowTellMerge(config)


def sat_model(**overrides) -> ShowAttendTell:
    config = ShowAttendTellConfig(
        vocab_size=VOCAB,
        feature_dim=CHANNELS,
        embed_dim=16,
        attention_dim=12,
        hidden_dim=24,
        dropout=0.0,
        min_word_count=1,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return ShowAttendTell(config)


def features_for(model: CaptionModel, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (n, FEATURE) if isinstance(model, ShowTellMerge) else (n, GRID, CHANNELS)
    return torch.randn(shape, generator=gen)


def batch_of(captions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Caption ids -> (input_ids = ids + EOS padded with 0, labels with IGNORE_INDEX at padding)."""
    width = max(len(c) for c in captions) + 1
    input_ids = torch.zeros(len(captions), width, dtype=torch.long)
    labels = torch.full((len(captions), width), IGNORE_INDEX, dtype=torch.long)
    for i, caption in enumerate(captions):
        ids = torch.tensor(caption + [EOS])
        input_ids[i, : len(ids)] = ids
        labels[i, : len(ids)] = ids
    return input_ids, labels


BUILDERS: dict[str, Callable[..., CaptionModel]] = {"show-tell-merge": merge_model, "show-attend-tell": sat_model}
