"""Datasets: readers/writers for every common caption format, safe image loading, text, feature caches."""

from captionkit.data.records import SPLITS, CaptionDataset, Record
from captionkit.errors import DatasetError

__all__ = ["SPLITS", "CaptionDataset", "DatasetError", "Record"]
