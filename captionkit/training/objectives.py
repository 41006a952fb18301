"""Training objectives the engine runs: what a training item is and the loss of a batch. Cross-entropy (teacher
forcing on (image, caption) pairs) and self-critical sequence training (sampled captions rewarded by CIDEr-D)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from captionkit.data.records import Record
from captionkit.models.base import CaptionModel, TextTokenizer, sequence_log_probs
from captionkit.training.config import RunConfig, ScstConfig
from captionkit.training.data import (
    CollatePairs,
    ImageDataset,
    PairDataset,
    caption_pairs,
    collate_images,
    image_groups,
)


class Objective:
    """One training objective. `train_data` turns a job's training data (caption records; a labelled image
    source) into the training loader's parts; `loss` gets the model the engine prepared (a DDP wrapper under many
    processes: its forward syncs gradients, so a loss goes through `forward`) and the plain model (for decoding,
    which steps the model outside `forward`)."""

    name: ClassVar[str]

    def train_data(
        self, records: Sequence[Record], source: Callable[[str], Tensor]
    ) -> tuple[Dataset, Callable[[list], Any], list[list[int]] | None, int | None]:
        """(dataset, collate function, item groups, items per group per epoch) of the training loader."""
        raise NotImplementedError

    def loss(self, model: Any, unwrapped: CaptionModel, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """(scalar loss to minimise, {name: scalar tensor} statistics to log as train_<name>)."""
        raise NotImplementedError

    def set_step(self, step: int) -> None:
        """The engine tells the objective the optimizer updates done so far before each batch (for curricula)."""


class CrossEntropy(Objective):
    """One item per (image, caption) pair; the model's own loss (cross-entropy plus any regulariser)."""

    name = "cross_entropy"

    def __init__(self, config: RunConfig, tokenizer: TextTokenizer, train_records: Sequence[Record]) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = config.train.max_caption_tokens
        self.per_image = config.train.captions_per_image

    def train_data(self, records, source):
        pairs = PairDataset(caption_pairs(records, self.tokenizer, self.max_tokens), source)
        groups = image_groups(pairs.pairs) if self.per_image else None
        return pairs, CollatePairs(self.tokenizer.pad_token_id), groups, self.per_image

    def loss(self, model, unwrapped, batch):
        return model(batch).loss, {}


class SelfCritical(Objective):
    """One item per training image; per image `samples` sampled captions, rewarded by CIDEr-D (ScstConfig)."""

    name = "scst"

    def __init__(self, config: RunConfig, tokenizer: TextTokenizer, train_records: Sequence[Record]) -> None:
        from captionkit.config import from_dict
        from captionkit.decoding import DecodingConfig
        from captionkit.evaluation.cider_reward import CiderD

        self.config: ScstConfig = config.scst
        self.tokenizer = tokenizer
        self.sampling = from_dict(DecodingConfig, {**self.config.decoding, "do_sample": True}, where="scst.decoding")
        self.greedy = self.sampling.replace(do_sample=False)  # the greedy baseline decodes as long as samples
        # document frequencies of all training references, computed once
        self.reward = CiderD({r.image_id: list(r.captions) for r in train_records})

    def train_data(self, records, source):
        return ImageDataset([r.image_id for r in records], source), collate_images, None, None

    def rewards(self, image_ids: Sequence[str], ids: Sequence[Sequence[int]]) -> Tensor:
        """(N,) CIDEr-D of each caption against its image's references, plus the length term."""
        texts = [self.tokenizer.decode(list(seq)) for seq in ids]
        reward = torch.as_tensor(self.reward(list(image_ids), texts), dtype=torch.float32)
        if self.config.length_weight:
            reward += self.config.length_weight * torch.tensor([float(len(seq)) for seq in ids])
        return reward

    def targets(self, ids: Sequence[Sequence[int]], device: torch.device) -> tuple[Tensor, Tensor]:
        """Sampled ids -> (N, T) ids (EOS where the sample ended) and (N, T) mask, for the log-probabilities."""
        from captionkit.decoding import caption_targets

        return caption_targets(
            [list(seq) for seq in ids],
            self.tokenizer.eos_token_id,
            self.tokenizer.pad_token_id,
            self.sampling.max_new_tokens,
            device,
        )

    def loss(self, model, unwrapped, batch):
        from captionkit.decoding import generate

        features, image_ids = batch["features"], batch["image_ids"]
        k = self.config.samples
        repeated = features.repeat_interleave(k, dim=0)  # (B*k, *feature_shape): sample j of image i at i*k + j
        eos = self.tokenizer.eos_token_id
        ids = generate(unwrapped, repeated, eos, self.sampling)  # decoding runs in eval mode, without autograd
        sample_images = [image for image in image_ids for _ in range(k)]
        reward = self.rewards(sample_images, ids).view(-1, k).to(features.device)  # (B, k)
        if self.config.baseline == "mean":  # the mean reward of the image's other samples
            baseline = (reward.sum(dim=1, keepdim=True) - reward) / (k - 1)
        else:  # the reward of the image's greedy caption
            greedy = generate(unwrapped, features, eos, self.greedy)
            baseline = self.rewards(image_ids, greedy).to(features.device)[:, None].expand(-1, k)
        input_ids, mask = self.targets(ids, features.device)
        token_logp, entropy = sequence_log_probs(
            model, repeated, input_ids, mask, entropy=self.config.entropy_weight > 0
        )
        advantage = (reward - baseline).reshape(-1)  # (B*k,), a constant: no gradient through the reward
        loss = -(advantage * token_logp.sum(dim=1)).mean()
        stats = {"reward": reward.mean(), "baseline": baseline.mean(), "sample_tokens": mask.sum(dim=1).mean()}
        if entropy is not None:
            mean_entropy = entropy.sum() / mask.sum().clamp_min(1.0)
            loss = loss - self.config.entropy_weight * mean_entropy
            stats["entropy"] = mean_entropy.detach()
        return loss, stats


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (CrossEntropy, SelfCritical)}


def make_objective(config: RunConfig, tokenizer: TextTokenizer, train_records: Sequence[Record]) -> Objective:
    """The objective `config.train.objective` names (validated by TrainConfig)."""
    return OBJECTIVES[config.train.objective](config, tokenizer, train_records)
