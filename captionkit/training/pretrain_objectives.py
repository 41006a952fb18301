"""The objectives of encoder pretraining, on the engine's Objective contract: CLIP's contrastive loss over
(image, caption) pairs, and a classifier's label loss (softmax, or sigmoids averaged per label group)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from captionkit.data.records import Record
from captionkit.models import hf
from captionkit.training.objectives import Objective


class ContrastiveCLIP(nn.Module):
    """A CLIPModel whose forward is the contrastive loss of a batch (so a DDP wrapper syncs its gradients).
    With `locked_image` the batch's "features" are the locked image side's embeddings (B, projection_dim),
    computed once; else pixels (B, 3, S, S)."""

    def __init__(self, clip: nn.Module, locked_image: bool) -> None:
        super().__init__()
        self.clip = clip
        self.locked_image = locked_image

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        if self.locked_image:
            return hf.clip_contrastive_loss_from_image_embeds(
                self.clip, batch["features"], batch["input_ids"], batch["attention_mask"]
            )
        return hf.clip_contrastive_loss(self.clip, batch["features"], batch["input_ids"], batch["attention_mask"])


class _CaptionedImages(Dataset):
    """Item i -> {"features": the image's row of `features`, "caption": one of its captions}."""

    def __init__(self, pairs: list[tuple[int, str]], features: Tensor) -> None:
        self.pairs, self.features = pairs, features

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, caption = self.pairs[index]
        return {"features": self.features[image], "caption": caption}


class Contrastive(Objective):
    """CLIP's symmetric InfoNCE over the batch; an epoch visits every image once with one of its captions, drawn
    anew each epoch (two captions of one image in a batch would be false negatives of each other)."""

    name = "contrastive"

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def train_data(self, records: Sequence[Record], source: Tensor) -> tuple[Dataset, Callable, list, int]:
        """`source`: (N, ...) features of the N records' images, in record order."""
        pairs = [(i, caption) for i, record in enumerate(records) for caption in record.captions]
        groups: list[list[int]] = [[] for _ in records]
        for index, (image, _) in enumerate(pairs):
            groups[image].append(index)
        return _CaptionedImages(pairs, source), self.collate, groups, 1

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Tensor]:
        ids, mask = hf.clip_tokenize(self.tokenizer, [item["caption"] for item in items], self.max_tokens)
        return {"features": torch.stack([item["features"] for item in items]), "input_ids": ids, "attention_mask": mask}

    def loss(self, model, unwrapped, batch):
        return model(batch), {}


class Classification(Objective):
    """Softmax cross-entropy when every image has one label; else sigmoid cross-entropy averaged within each label
    group, then over groups, with an optional curriculum: for the first `first_steps` updates only the labels of
    `first_mask` count (the others weighted by `first_other_weight`). A network that also returns coverage logits
    (a locating VGG) adds `location_weight` x their sigmoid cross-entropy against the batch's "coverage"."""

    name = "classification"

    def __init__(
        self,
        single_label: bool,
        groups: Tensor,
        first_mask: Tensor,
        first_steps: int,
        first_other_weight: float,
        location_weight: float = 0.0,
    ) -> None:
        self.single_label, self.groups, self.first_mask = single_label, groups, first_mask
        self.first_steps, self.first_other_weight = first_steps, first_other_weight
        self.location_weight = location_weight
        self.step = 0

    def train_data(self, records: Dataset, source: Any = None) -> tuple[Dataset, Callable, None, None]:
        """`records`: a dataset of {"features": pixels, "targets": (num_labels,)} items in training order."""
        return records, torch.utils.data.default_collate, None, None

    def set_step(self, step: int) -> None:
        self.step = step

    def loss(self, model, unwrapped, batch):
        output = model(batch["features"])
        if isinstance(output, tuple):  # label logits, coverage logits
            logits, coverage = output[0].float(), output[1].float()
            located = nn.functional.binary_cross_entropy_with_logits(coverage, batch["coverage"])
            loss, logs = self._label_loss(logits, batch["targets"])
            return loss + self.location_weight * located, {**logs, "location_loss": located.detach()}
        return self._label_loss(output.float(), batch["targets"])

    def _label_loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        if self.single_label:
            return nn.functional.cross_entropy(logits, targets.argmax(1)), {}
        if self.step < self.first_steps:  # the curriculum's first part: its label groups (the others weigh less)
            first, other = self.first_mask, ~self.first_mask
            loss = grouped_bce(logits[:, first], targets[:, first], _dense(self.groups[first]))
            if self.first_other_weight:
                loss = loss + self.first_other_weight * grouped_bce(
                    logits[:, other], targets[:, other], _dense(self.groups[other])
                )
            return loss, {}
        return grouped_bce(logits, targets, self.groups), {}


def _dense(groups: Tensor) -> Tensor:
    """Group ids renumbered 0..k-1 (a subset of the labels holds a subset of the groups)."""
    return torch.unique(groups, return_inverse=True)[1]


def grouped_bce(logits: Tensor, targets: Tensor, groups: Tensor) -> Tensor:
    """Sigmoid cross-entropy averaged within each label group, then over the groups: (B, L), (B, L), (L,) -> ()."""
    per_label = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(0)  # (L,)
    groups = groups.to(per_label.device)
    sums = torch.zeros(int(groups.max()) + 1, device=per_label.device).index_add_(0, groups, per_label)
    return (sums / torch.bincount(groups).to(per_label.dtype)).mean()
