"""Evaluate a model directory on a dataset split: caption every image, score, write the run's eval/<split>/ files.

Writes predictions.json (COCO results), metrics.json (corpus scores keyed by pycocoevalcap's names), per_item.json
({image_id: {metric: score}}), decoding.json (the DecodingConfig used) and scoring.json (tokenizer used, metrics
skipped and why, counts). object_f1 is added when the dataset folder has the synthetic generator's scenes.json.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionkit.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    out_dir: Path
    corpus: dict[str, float]
    captions: dict[str, str]
    info: dict[str, Any]


def default_out_dir(model_dir: str | os.PathLike, split: str) -> Path:
    """RUN_DIR/eval/<split> for a run's RUN_DIR/model, else MODEL_DIR/eval/<split>."""
    model_dir = Path(model_dir)
    run_dir = model_dir.parent if model_dir.name == "model" else model_dir
    return run_dir / "eval" / split


def resolve_out_dir(out: str | os.PathLike | None, model_dir: str | os.PathLike, split: str) -> Path:
    """--out may name a run directory (it has model/ or resolved_config.json: results go to OUT/eval/<split>) or
    the folder to write into."""
    if out is None:
        return default_out_dir(model_dir, split)
    out = Path(out)
    if (out / "model").is_dir() or (out / "resolved_config.json").is_file():
        return out / "eval" / split
    return out


def _scenes_for(dataset: str | os.PathLike) -> dict[str, dict] | None:
    path = Path(dataset)
    if not path.exists():  # a brace pattern of shards or hf:NAME
        return None
    folder = path if path.is_dir() else path.parent
    if not (folder / "scenes.json").is_file():
        return None
    from captionkit.evaluation.object_f1 import load_scenes

    return load_scenes(folder)


def evaluate_model(
    model_dir: str | os.PathLike,
    dataset: str | os.PathLike,
    split: str = "test",
    decoding: Mapping[str, Any] | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 16,
    device: str | None = None,
    metrics: str | list[str] | None = None,
    tokenizer: str = "auto",
    progress: bool = True,
    dataset_format: str = "auto",
    dataset_options: Mapping[str, Any] | None = None,
    rerank: Mapping[str, Any] | None = None,
    precision: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Caption `split` of `dataset` with the model in `model_dir` and write the eval files (see module doc).

    rerank: Captioner.caption's reranking options ({"rerank": "clip", "rerank_weight": w, ...}); the settings
    go into decoding.json as "rerank". precision: captionkit.load's dtype / quantize / max_pixels options."""
    from captionkit.config import to_dict
    from captionkit.data.formats import load_dataset
    from captionkit.decoding import DecodingConfig
    from captionkit.evaluation.metrics import resolve_metrics, score
    from captionkit.evaluation.results import coco_results, write_json
    from captionkit.inference.captioner import Captioner
    from captionkit.inference.rerank import RerankConfig

    decoding = dict(decoding or {})
    settings = to_dict(DecodingConfig(**decoding))  # validates the options before any captioning
    rerank = dict(rerank or {})
    rerank_config = RerankConfig.from_options(**rerank)
    if rerank_config is not None:
        settings["rerank"] = to_dict(rerank_config)
    data = load_dataset(dataset, dataset_format, **dict(dataset_options or {}))
    records = data.split(split)
    usable = data.with_images(records)
    if not usable:
        raise DatasetError(f"{dataset}: split {split!r} has {len(records)} images, none of them on disk")
    if len(usable) < len(records):
        present = {r.image_id for r in usable}
        missing = [r.image_id for r in records if r.image_id not in present]
        log.warning(
            "%s: %d of %d %s images are missing (e.g. %s); evaluating the %d present",
            dataset,
            len(missing),
            len(records),
            split,
            ", ".join(missing[:3]),
            len(usable),
        )
    captioner = Captioner.from_dir(str(model_dir), device=device, **dict(precision or {}))
    texts = captioner.caption([r.image for r in usable], batch_size=batch_size, progress=progress, **decoding, **rerank)
    captions = {r.image_id: str(t) for r, t in zip(usable, texts)}
    scenes = _scenes_for(dataset)
    names = None if metrics is None else resolve_metrics(metrics)
    if scenes and names is not None and "object_f1" not in names:
        names.append("object_f1")  # metrics=None adds it by itself when scenes are given
    result = score(
        {r.image_id: list(r.captions) for r in usable},
        captions,
        names,
        tokenizer,
        scenes={k: scenes[k] for k in captions} if scenes else None,
    )
    out = resolve_out_dir(out_dir, model_dir, split)
    info = {
        **result.info(),
        "model_dir": str(model_dir),
        "dataset": str(dataset),
        "split": split,
        "images_in_split": len(records),
        "images_scored": len(usable),
    }
    write_json(out / "predictions.json", coco_results(captions))
    write_json(out / "metrics.json", result.corpus)
    write_json(out / "per_item.json", result.per_item)
    write_json(out / "decoding.json", settings)
    write_json(out / "scoring.json", info)
    return EvalResult(out_dir=out, corpus=result.corpus, captions=captions, info=info)
