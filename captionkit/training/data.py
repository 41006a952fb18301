"""Training data: one item per (image, caption) pair, image features read from the feature cache by image id (or
pixels decoded in DataLoader workers for end-to-end models), shuffled deterministically from (seed, epoch) so a
run's data position can be saved and restored exactly."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from captionkit.data.records import CaptionDataset, Record
from captionkit.models.base import TextTokenizer
from captionkit.models.devices import default_device

log = logging.getLogger(__name__)

Pair = tuple[str, list[int]]  # (image id, caption ids + EOS)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for one epoch that never repeats across (seed, epoch) combinations (unlike seed + epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class EpochSampler(Sampler[int]):
    """A permutation of the items that depends only on (seed, epoch): a resumed run replays the same order.

    With `groups` (the item indices of each image) and `per_group` = N, an epoch visits N captions of every image,
    drawn anew each epoch, instead of all of them: for models that encode pixels, a pass costs N image
    encodings per image, not one per caption.

    Deliberately has no `generator` attribute: accelerate then shards batches across processes without
    re-seeding anything, and every process draws the same permutation.
    """

    def __init__(
        self,
        num_items: int,
        seed: int,
        shuffle: bool = True,
        groups: Sequence[Sequence[int]] | None = None,
        per_group: int | None = None,
    ) -> None:
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.groups = [list(g) for g in groups] if groups is not None and per_group else None
        self.per_group = per_group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.groups is not None:
            items = [g[i] for g in self.groups for i in torch.randperm(len(g), generator=generator)[: self.per_group]]
        else:
            items = list(range(self.num_items))
        if not self.shuffle:
            return iter(sorted(items))
        return iter([items[i] for i in torch.randperm(len(items), generator=generator).tolist()])

    def __len__(self) -> int:
        if self.groups is not None:
            return sum(min(len(g), self.per_group) for g in self.groups)
        return self.num_items


def usable_records(dataset: CaptionDataset, split: str) -> list[Record]:
    """The split's records whose image exists; the missing ones are logged, never trained or evaluated on."""
    records = dataset.split(split)
    kept = dataset.with_images(records)
    dropped = [r for r in records if not r.image_path.is_file()]
    if dropped:
        captions = sum(len(r.captions) for r in dropped)
        names = ", ".join(r.image_id for r in dropped[:3])
        log.warning(
            "%s split: %d of %d images are missing; their %d captions are not used (first: %s)",
            split,
            len(dropped),
            len(records),
            captions,
            names,
        )
    return kept


def caption_pairs(records: Sequence[Record], tokenizer: TextTokenizer, max_tokens: int) -> list[Pair]:
    """One (image id, ids) pair per caption; captions are tokenized once here, not every epoch."""
    from captionkit.data.text import encode_for_training

    return [
        (r.image_id, encode_for_training(tokenizer, caption, max_tokens)) for r in records for caption in r.captions
    ]


class FeatureSource:
    """Image id -> cached encoder output (B-less, `*feature_shape`), read from the memory-mapped cache."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def __call__(self, image_id: str) -> Tensor:
        return self.cache.get(image_id)


class PixelSource:
    """Image id -> preprocessed pixels (3, H, W) for models that own their encoder (input_kind "pixels")."""

    def __init__(self, records: Sequence[Record], preprocess: Callable[[Any], Tensor]) -> None:
        self.paths = {r.image_id: r.image for r in records}  # a file, or an image inside a dataset shard
        self.preprocess = preprocess

    def __call__(self, image_id: str) -> Tensor:
        from captionkit.data.images import load_image

        return self.preprocess(load_image(self.paths[image_id]))


class PairDataset(Dataset):
    """Item i = {"features": image features or pixels, "ids": caption ids + EOS}; reads only, never writes."""

    def __init__(self, pairs: Sequence[Pair], source: Callable[[str], Tensor]) -> None:
        self.pairs = list(pairs)
        self.source = source

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id, ids = self.pairs[index]
        return {"features": self.source(image_id), "ids": ids}


class ImageDataset(Dataset):
    """Item i = {"image_id", "features"}: each image once, for decoding captions on the dev split."""

    def __init__(self, image_ids: Sequence[str], source: Callable[[str], Tensor]) -> None:
        self.image_ids = list(image_ids)
        self.source = source

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image_id": self.image_ids[index], "features": self.source(self.image_ids[index])}


class CollatePairs:
    """Items -> {"features" (B, *shape), "input_ids" (B, T), "labels" (B, T) with IGNORE_INDEX at padding}."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Tensor]:
        from captionkit.data.text import collate_captions

        input_ids, labels = collate_captions([item["ids"] for item in items], self.pad_token_id)
        return {"features": torch.stack([item["features"] for item in items]), "input_ids": input_ids, "labels": labels}


def collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "image_ids": [item["image_id"] for item in items],
        "features": torch.stack([item["features"] for item in items]),
    }


def image_groups(pairs: Sequence[Pair]) -> list[list[int]]:
    """Indices of the pairs of each image, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for index, (image_id, _) in enumerate(pairs):
        groups.setdefault(image_id, []).append(index)
    return list(groups.values())


def train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    num_workers: int,
    collate: Callable[[list], Any],
    groups: Sequence[Sequence[int]] | None = None,
    per_group: int | None = None,
    shuffle: bool = True,
) -> tuple[DataLoader, EpochSampler, torch.Generator]:
    """The training DataLoader, its sampler and the generator its workers are seeded from.

    `groups`/`per_group`: visit `per_group` random items of each group per epoch (EpochSampler); `shuffle=False`:
    the items in order (a dataset that orders its items itself).
    The loader gets its own generator so that creating an iterator never draws from the global torch RNG:
    otherwise a run resumed mid-epoch would shift the dropout masks of an uninterrupted one.
    """
    sampler = EpochSampler(len(dataset), seed, shuffle, groups, per_group)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        generator=generator,
        persistent_workers=False,
        pin_memory=default_device().type == "cuda",
    )
    return loader, sampler, generator


def shard_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    collate: Callable[[list], Any],
    process_index: int,
    num_processes: int,
) -> DataLoader:
    """This process's share (every num_processes-th item, no padding duplicates) of an evaluation dataset."""
    indices = list(range(process_index, len(dataset), num_processes))
    return DataLoader(
        torch.utils.data.Subset(dataset, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
    )


def feature_cache_dir(encoder: str, fingerprint: str, configured: str | None, run_dir: Path) -> Path:
    """Where the run's feature cache lives: the configured path, else a shared sibling of the run directory
    named by encoder, dataset and the encoder's local weight files (two datasets with one encoder never collide,
    and an encoder retrained into the same path never gets its predecessor's features)."""
    from captionkit.training.config import slug

    if configured:
        return Path(configured)
    stamp = local_weights_stamp(encoder)
    return run_dir.resolve().parent / "features" / f"{slug(encoder)}-{fingerprint[:12]}{'-' + stamp if stamp else ''}"


def local_weights_stamp(encoder: str) -> str:
    """A short hash of the names, sizes and modification times of the local files an encoder spec reads its weights
    from (`clip:DIR`, `vgg16:fc2@FILE`); "" for a hub id or a random initialisation. Sizes and times, not contents:
    cheap on a 500 MB VGG16 file, and a retrained model is always written anew."""
    from captionkit.models.encoders import parse_spec
    from captionkit.pretrained import packaged_path

    spec = parse_spec(encoder)
    kind = spec.kind
    for candidate in (spec.weights, spec.source):
        path = (packaged_path(kind, candidate) or Path(candidate).expanduser()) if candidate else None
        if path is not None and path.exists():
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            digest = hashlib.blake2b(digest_size=4)
            for file in files:
                stat = file.stat()
                digest.update(f"{file.relative_to(path.parent)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
            return digest.hexdigest()
    return ""


def feature_source(
    dataset: CaptionDataset,
    records: Sequence[Record],
    encoder: str,
    configured: str | None,
    run_dir: Path,
    device: torch.device,
    num_workers: int,
    batch_size: int = 32,
) -> FeatureSource:
    """The feature cache for (dataset, encoder) holding every image of `records`: reused when it already has them,
    else extracted (or an interrupted extraction resumed) first. A cache of another encoder or dataset is refused
    (FeatureCacheError says what differs)."""
    from captionkit.data.features import MANIFEST, FeatureCache, dataset_fingerprint, extract_features
    from captionkit.models.encoders import load_encoder

    # over all records, as `captionkit features extract` computes it, so a cache made by that command is reused
    fingerprint = dataset_fingerprint(dataset.records)
    directory = feature_cache_dir(encoder, fingerprint, configured, run_dir)
    wanted = {r.image_id for r in records}
    if (directory / MANIFEST).is_file():
        cache = FeatureCache.open(directory, expect_encoder=encoder, expect_fingerprint=fingerprint)
        if not set(cache.missing(wanted)) - set(cache.failed):
            log.info("features: reusing %s", directory)
            return FeatureSource(cache)
    log.info("features: encoding %d images with %s into %s", len(wanted), encoder, directory)
    image_encoder = load_encoder(encoder).to(device)
    cache = extract_features(
        records,
        image_encoder,
        directory,
        batch_size=batch_size,
        num_workers=num_workers,
        dataset_fingerprint=fingerprint,
    )
    return FeatureSource(cache)


def with_features(records: Sequence[Record], source: Any, split: str) -> list[Record]:
    """The records whose image has features (an unreadable image has none): never trained or evaluated on."""
    if not isinstance(source, FeatureSource):
        return list(records)
    kept = [r for r in records if r.image_id in source.cache]
    if len(kept) < len(records):
        log.warning(
            "%s split: %d images could not be read when features were extracted; their captions are not "
            "used (see `captionkit features info %s`)",
            split,
            len(records) - len(kept),
            source.cache.directory,
        )
    return kept
