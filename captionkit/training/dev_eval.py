"""Evaluation on the dev split during training: the caption loss (token-weighted, over all dev captions) and,
when captionkit's decoding and metrics modules are installed, caption metrics of greedy (or configured) decodes.
Each process takes a share of the data; the results are combined so every process gets the same numbers."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object, send_to_device
from torch import Tensor

from captionkit.data.records import Record
from captionkit.models.base import IGNORE_INDEX, CaptionModel, TextTokenizer
from captionkit.training.config import EvalConfig
from captionkit.training.data import CollatePairs, ImageDataset, PairDataset, collate_images, shard_loader

log = logging.getLogger(__name__)


def metrics_unavailable() -> str | None:
    """Why caption metrics cannot be computed in this installation, or None when they can."""
    for module in ("captionkit.decoding", "captionkit.evaluation.metrics"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


class DevEvaluator:
    """Computes {"dev_loss": ..., "dev_<metric>": ...} for the model at the end of an epoch."""

    def __init__(
        self,
        accelerator: Any,
        records: Sequence[Record],
        pairs: PairDataset,
        source: Callable[[str], Tensor],
        tokenizer: TextTokenizer,
        config: EvalConfig,
        num_workers: int,
    ) -> None:
        self.accelerator = accelerator
        self.tokenizer = tokenizer
        self.config = config
        rank, world = accelerator.process_index, accelerator.num_processes
        self.loss_loader = shard_loader(
            pairs, config.batch_size, num_workers, CollatePairs(tokenizer.pad_token_id), rank, world
        )
        self.metrics = list(config.metrics)
        reason = metrics_unavailable() if self.metrics else None
        if reason:
            log.warning("dev caption metrics skipped: %s (dev loss only)", reason)
            self.metrics = []
        elif self.metrics:
            from captionkit.config import from_dict
            from captionkit.decoding import DecodingConfig
            from captionkit.evaluation.metrics import resolve_metrics

            self.metrics = resolve_metrics(self.metrics)  # canonical names: "cider" -> "CIDEr"
            # a bad decoding key fails here, before the first epoch, not after it
            self.decoding = from_dict(DecodingConfig, config.decoding, where="eval.decoding")
        chosen = list(records)[: config.max_images] if config.max_images else list(records)
        self.references = {r.image_id: list(r.captions) for r in chosen}
        self.image_loader = (
            shard_loader(
                ImageDataset(list(self.references), source), config.batch_size, num_workers, collate_images, rank, world
            )
            if self.metrics
            else None
        )

    @torch.no_grad()
    def __call__(self, model: CaptionModel) -> tuple[dict[str, float], list[dict[str, str]]]:
        """(scores, a few example captions); `model` is the unwrapped model, left in eval mode."""
        model.eval()
        scores = {"dev_loss": self.loss(model)}
        examples: list[dict[str, str]] = []
        if self.metrics:
            captions = self.decode(model)
            if self.accelerator.is_main_process:
                from captionkit.evaluation.metrics import score

                corpus, _ = score({k: self.references[k] for k in captions}, captions, metrics=self.metrics)
                result = [{f"dev_{k}": float(v) for k, v in corpus.items()}]
            else:
                result = [None]
            scores.update(broadcast_object_list(result, from_process=0)[0])
            examples = [{"image_id": k, "caption": captions[k]} for k in list(captions)[:3]]
        return scores, examples

    def loss(self, model: CaptionModel) -> float:
        """Mean loss per caption token over the whole dev split, equal to one big batch's loss."""
        device = self.accelerator.device
        totals = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of loss * tokens, tokens)
        for batch in self.loss_loader:
            batch = send_to_device(batch, device)
            with self.accelerator.autocast():
                loss = model(batch).loss
            tokens = (batch["labels"] != IGNORE_INDEX).sum()
            totals += torch.stack([loss.double() * tokens, tokens.double()])
        totals = self.accelerator.reduce(totals, reduction="sum")
        return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")

    def decode(self, model: CaptionModel) -> dict[str, str]:
        """Image id -> decoded caption for every chosen dev image, gathered from all processes."""
        from captionkit.decoding import generate

        pairs: list[tuple[str, str]] = []
        for batch in self.image_loader:
            features = batch["features"].to(self.accelerator.device)
            with self.accelerator.autocast():
                ids = generate(model, features, eos_token_id=self.tokenizer.eos_token_id, config=self.decoding)
            pairs.extend(zip(batch["image_ids"], (self.tokenizer.decode(seq) for seq in ids)))
        if self.accelerator.num_processes > 1:
            pairs = gather_object(pairs)
        return dict(pairs)
