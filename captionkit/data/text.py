"""Caption text: normalisation and caption ids/labels for training (the word vocabulary is a tokenizer:
`captionkit.models.tokenizers`)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from captionkit.models.base import TextTokenizer

IGNORE_INDEX = -100  # == captionkit.models.base.IGNORE_INDEX; repeated so this module imports without torch
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_caption(
    text: str,
    *,
    lowercase: bool = False,
    strip_punctuation: bool = False,
    collapse_whitespace: bool = True,
    final_period: bool | None = None,
) -> str:
    """Clean one caption.

    lowercase: "A Dog" -> "a dog". strip_punctuation: drop ASCII punctuation (apostrophes too: "dog's" -> "dogs").
    collapse_whitespace: runs of spaces/tabs/newlines -> one space, ends stripped. final_period: None leaves the end
    as it is; True makes it end in " ." (the Flickr8k convention); False removes a final "." / " .".
    """
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = _PUNCT.sub(" " if collapse_whitespace else "", text)
    if collapse_whitespace:
        text = " ".join(text.split())
    if final_period is not None:
        text = text.rstrip()
        if text.endswith("."):
            text = text[:-1].rstrip()
        if final_period:
            text = f"{text} ." if text else "."
    return text


_SPACE_BEFORE = re.compile(r"\s+([,.;:!?]|'s\b)")
_END = re.compile(r"\s*([.!?])[\s.!?]*$")


def tidy_caption(text: str) -> str:
    """A generated caption as a reader expects it, the same for every model family: tokens detokenised ("a dog ,
    running ." -> "a dog, running."; "dog 's" -> "dog's") and one final period ("two red circles" -> "two red
    circles."). Metrics still tokenise it as pycocoevalcap does, so scores do not change."""
    text = _SPACE_BEFORE.sub(r"\1", " ".join(text.split()))
    if not text:
        return text
    return _END.sub(r"\1", text) if _END.search(text) else f"{text}."


def encode_for_training(tokenizer: TextTokenizer, caption: str, max_length: int) -> list[int]:
    """Caption ids + EOS, at most `max_length` ids: a long caption is cut but always ends in EOS, so the model
    learns to stop (never stop on "."; Flickr8k's " ." is an ordinary token)."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1 (room for EOS), got {max_length}")
    return tokenizer.encode(caption)[: max_length - 1] + [tokenizer.eos_token_id]


def collate_captions(id_lists: Sequence[Sequence[int]], pad_token_id: int) -> tuple[Tensor, Tensor]:
    """Pad id lists to one batch: input_ids (B, T) padded with `pad_token_id`, labels (B, T) the same ids with
    IGNORE_INDEX (-100) at padding, so padding never counts in the loss (unlike the original ClipCap's 0 = "!")."""
    import torch  # lazy: the data layer is usable without torch until a batch is built

    if not id_lists:
        raise ValueError("collate_captions: empty batch")
    width = max(len(ids) for ids in id_lists)
    input_ids = torch.full((len(id_lists), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(id_lists), width), IGNORE_INDEX, dtype=torch.long)
    for row, ids in enumerate(id_lists):
        input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
        labels[row, : len(ids)] = input_ids[row, : len(ids)]
    return input_ids, labels
