"""Evaluate a model directory on a dataset split: caption every image, score, write one results folder.

The folder is ROOT/eval/<split>/<dataset id>/<decoding key>/ (captionkit.rundir), ROOT the run directory of
RUN_DIR/model (or `out`): results are keyed by what produced them, so evaluating on other data, another split or with
other decoding never replaces earlier results. It holds predictions.json (COCO results), metrics.json (corpus scores
keyed by pycocoevalcap's names), per_item.json ({image_id: {metric: score}}), decoding.json (the DecodingConfig
used) and scoring.json (the dataset, split, image counts, tokenizer, metrics skipped and why). object_f1 is added
when the dataset folder has the synthetic generator's scenes.json.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionkit import rundir
from captionkit.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    out_dir: Path
    corpus: dict[str, float]
    captions: dict[str, str]
    info: dict[str, Any]
    replaced: bool = False  # the very same evaluation had been written before and was replaced


def decoding_settings(
    decoding: Mapping[str, Any] | None,
    rerank: Mapping[str, Any] | None = None,
    precision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every decoding setting (defaults filled in, validated) as decoding.json holds it, reranking as "rerank" and a
    number format other than float32 as "precision" (bf16 or int8 captions are other results than fp32 ones)."""
    from captionkit.config import to_dict
    from captionkit.decoding import DecodingConfig
    from captionkit.inference.rerank import RerankConfig

    settings = to_dict(DecodingConfig(**dict(decoding or {})))
    rerank_config = RerankConfig.from_options(**dict(rerank or {}))
    if rerank_config is not None:
        settings["rerank"] = to_dict(rerank_config)
    number_format = {k: v for k, v in dict(precision or {}).items() if k in ("dtype", "quantize") and v}
    if number_format and number_format != {"dtype": "float32"}:
        settings["precision"] = number_format
    return settings


def results_dir_for(
    model_dir: str | os.PathLike,
    dataset: str | os.PathLike,
    split: str = "test",
    decoding: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    *,
    dataset_format: str = "auto",
    dataset_options: Mapping[str, Any] | None = None,
    rerank: Mapping[str, Any] | None = None,
    precision: Mapping[str, Any] | None = None,
) -> Path:
    """Where `evaluate_model` with these arguments writes (and finds) its results (the same computation)."""
    root = Path(out) if out is not None else rundir.run_root(model_dir)
    identity = rundir.dataset_identity(dataset, dataset_format, dataset_options)
    return rundir.results_dir(
        root, split, identity["id"], rundir.decoding_key(decoding_settings(decoding, rerank, precision))
    )


def _write_results(out: Path, files: Mapping[str, Any]) -> bool:
    """Write the result files into a fresh folder beside `out`, then move it into place: a crash leaves either the
    old results or the new ones, never a mix. True when `out` held results before (the same evaluation, redone)."""
    from captionkit.evaluation.results import write_json

    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for name, data in files.items():
        write_json(tmp / name, data)
    replaced = out.exists()
    if replaced:
        shutil.rmtree(out)
    os.replace(tmp, out)
    return replaced


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
    from captionkit.data.formats import load_dataset
    from captionkit.evaluation.metrics import score
    from captionkit.evaluation.object_f1 import dataset_scenes, with_object_f1
    from captionkit.evaluation.results import coco_results
    from captionkit.inference.captioner import Captioner

    decoding = dict(decoding or {})
    rerank = dict(rerank or {})
    settings = decoding_settings(decoding, rerank, precision)  # validates the options before any captioning
    root = Path(out_dir) if out_dir is not None else rundir.run_root(model_dir)
    identity = rundir.dataset_identity(dataset, dataset_format, dataset_options)
    out = rundir.results_dir(root, split, identity["id"], rundir.decoding_key(settings))
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
    scenes = dataset_scenes(dataset)
    names = with_object_f1(metrics, scenes)
    result = score(
        {r.image_id: list(r.captions) for r in usable},
        captions,
        names,
        tokenizer,
        scenes={k: scenes[k] for k in captions} if scenes else None,
    )
    info = {
        **result.info(),
        "model_dir": os.path.abspath(model_dir),
        "dataset": rundir.dataset_entry(identity, root),
        "split": split,
        "images_in_split": len(records),
        "images_scored": len(usable),
        "layout": rundir.LAYOUT_VERSION,
    }
    replaced = _write_results(
        out,
        {
            rundir.PREDICTIONS: coco_results(captions),
            rundir.METRICS: result.corpus,
            rundir.PER_ITEM: result.per_item,
            rundir.DECODING: settings,
            rundir.SCORING: info,
        },
    )
    return EvalResult(out_dir=out, corpus=result.corpus, captions=captions, info=info, replaced=replaced)
