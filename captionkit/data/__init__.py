"""Datasets: readers/writers for every common caption format, safe image loading, text, feature caches.

May import models (tokenizers and encoders, for feature caches), the packaged weights and the foundation (config,
registry, errors, version); never decoding, inference or anything above them."""

from captionkit.data.records import SPLITS, CaptionDataset, Record
from captionkit.errors import DatasetError

__all__ = ["SPLITS", "CaptionDataset", "DatasetError", "Record"]
