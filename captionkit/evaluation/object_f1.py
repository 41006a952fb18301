"""object_f1: does a caption name the objects that are really in a synthetic scene (colour, shape, count)?

Caption metrics alone cannot tell: on the demo data a caption with every shape wrong still shares most n-grams with
the references. object_f1 reads the caption with the generator's own grammar (`parse_objects`) and compares the
multiset of (colour, shape) objects it mentions, with counts, to the scene's objects.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from captionkit.data.scene_grammar import kind_counts, parse_objects
from captionkit.errors import DatasetError

__all__ = ["dataset_scenes", "load_scenes", "object_f1", "parse_objects", "score_object_f1", "with_object_f1"]


def multiset_f1(predicted: Counter, actual: Counter) -> float:
    """F1 of two multisets: true positives are the multiset intersection, so naming two red circles where there
    are three gives precision 1 and recall 2/3."""
    hits = sum((predicted & actual).values())
    if hits == 0:
        return 0.0
    precision = hits / sum(predicted.values())
    recall = hits / sum(actual.values())
    return 2 * precision * recall / (precision + recall)


def object_f1(caption: str, scene: dict[str, Any]) -> float:
    """F1 between the (colour, shape) objects `caption` mentions (with counts) and the objects in `scene`."""
    return multiset_f1(parse_objects(caption), kind_counts(scene))


def score_object_f1(
    scenes: Mapping[str, dict[str, Any]], candidates: Mapping[str, str | list[str]]
) -> tuple[float, dict[str, float]]:
    """(corpus mean, {image_id: object_f1}) over the candidates' image ids, in the pycocoevalcap metric shape.

    A candidate may be a caption or a list of captions (pycocoevalcap passes a one-element list); a list scores the
    mean of its captions.
    """
    missing = [image_id for image_id in candidates if image_id not in scenes]
    if missing:
        raise DatasetError(
            f"{len(missing)} image id(s) have no scene, e.g. {missing[0]!r}: object_f1 needs the "
            "scenes.json of the synthetic dataset the images come from"
        )
    per_item: dict[str, float] = {}
    for image_id, caption in candidates.items():
        captions = [caption] if isinstance(caption, str) else list(caption)
        if not captions:
            raise DatasetError(f"image id {image_id!r} has an empty list of candidate captions")
        per_item[image_id] = sum(object_f1(c, scenes[image_id]) for c in captions) / len(captions)
    corpus = sum(per_item.values()) / len(per_item) if per_item else 0.0
    return corpus, per_item


def load_scenes(dataset_dir: str | Path) -> dict[str, dict[str, Any]]:
    """{image file name: scene} from a synthetic dataset's scenes.json (`dataset_dir` or the file itself)."""
    path = Path(dataset_dir)
    if path.is_dir():
        path = path / "scenes.json"
    if not path.is_file():
        raise DatasetError(f"{path} not found: object_f1 needs a dataset written by `captionkit data synth`")
    try:
        scenes = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc}); regenerate it with `captionkit data synth`") from exc
    if not isinstance(scenes, dict) or not all(isinstance(s, dict) and "objects" in s for s in scenes.values()):
        raise DatasetError(
            f"{path}: expected {{image name: {{'objects': [...], ...}}}}; regenerate it with `captionkit data synth`"
        )
    return scenes


def dataset_scenes(dataset: str | Path) -> dict[str, dict[str, Any]] | None:
    """The scenes of a synthetic dataset, or None: scenes.json in the dataset's folder (or beside its caption file).

    The one rule `evaluate` and `score` share for when object_f1 can be computed."""
    path = Path(dataset)
    if not path.exists():  # a brace pattern of shards, hf:NAME
        return None
    folder = path if path.is_dir() else path.parent
    if not (folder / "scenes.json").is_file():
        return None
    return load_scenes(folder)


def with_object_f1(metrics: str | list[str] | None, scenes: Mapping[str, Any] | None) -> list[str] | None:
    """The metric names to compute: object_f1 is added whenever scenes are known (None stays None: `score` adds it
    by itself then)."""
    if metrics is None:
        return None
    from captionkit.evaluation.metrics import resolve_metrics

    names = resolve_metrics(metrics)
    if scenes and "object_f1" not in names:
        names.append("object_f1")
    return names
