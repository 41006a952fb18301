"""captionkit: train, evaluate, compare and serve image-captioning models (VGG16+LSTM and ClipCap).

The public Python API is the functions below; each imports its layer when called, so `import captionkit` stays
cheap (no torch). What may import what is in pyproject.toml [tool.importlinter]: foundation (errors, version,
config, registry) <- models <- data, decoding <- inference <- evaluation <- training, report <- demo, serve <- cli.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captionkit.version import __version__

if TYPE_CHECKING:
    from PIL import Image

    from captionkit.data.records import CaptionDataset
    from captionkit.evaluation.evaluate import EvalResult
    from captionkit.evaluation.metrics import Scores
    from captionkit.inference.captioner import Captioner
    from captionkit.training.config import RunConfig

PathLike = str | os.PathLike


def load(model_dir: PathLike, device: str | None = None, **options: Any) -> Captioner:
    """Load a model directory into a Captioner: `.caption(images_or_paths)` and `.generate(encoder_outputs)`."""
    from captionkit.inference.captioner import Captioner

    return Captioner.from_dir(model_dir, device=device, **options)


def list_models() -> dict[str, dict[str, str]]:
    """The presets a run can start from: {name: {"type", "meant_for", "description"}} ("meant_for" is the data the
    preset was made for; its description when the preset does not say)."""
    from captionkit.registry import get_preset, list_presets

    models = {}
    for name, description in list_presets().items():
        preset = get_preset(name)
        meant_for = preset.get("meant_for") or description
        models[name] = {"type": preset["model"]["type"], "meant_for": meant_for, "description": description}
    return models


def load_dataset(path: PathLike, format: str = "auto", **options: Any) -> CaptionDataset:
    """Any dataset captionkit reads (Flickr8k, COCO, Karpathy, CSV/TSV/JSONL, shards, ...) as one record type;
    `options` are the reader's (image_column=, caption_column=, split=, ...)."""
    from captionkit.data.formats import load_dataset as read

    return read(path, format, **options)


def write_synthetic_dataset(out: PathLike, images: int = 100, seed: int = 0, **options: Any) -> Path:
    """The demo's procedurally drawn dataset (Flickr8k layout + scenes.json) in `out`; same arguments, same bytes."""
    from captionkit.data.synthetic import write_synthetic_dataset as write

    return write(out, images=images, seed=seed, **options)


def load_image(path: PathLike) -> Image.Image:
    """An RGB image, opened the safe way every command does (size limit, EXIF rotation, clear errors)."""
    from captionkit.data.images import load_image as read

    return read(path)


def train(
    config: RunConfig | PathLike | None = None,
    *,
    preset: str | None = None,
    dataset: PathLike | None = None,
    out: PathLike | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    **settings: Any,
) -> Path:
    """Train a model; returns its directory (RUN_DIR/model). `config` is a RunConfig or a YAML/JSON run file;
    otherwise the run is built as `captionkit train` builds it: a preset, then dataset/out/`settings`
    (features=, init_from=, dataset_format=, dataset_options=), then "KEY=VALUE" overrides."""
    from captionkit.errors import require

    require("accelerate", extra="train")
    from captionkit.training import RunConfig, load_run_config
    from captionkit.training import train as run

    if not isinstance(config, RunConfig):
        given = {"dataset": dataset, "out": out, **settings}
        config = load_run_config(
            config, preset, list(overrides), **{k: str(v) if isinstance(v, Path) else v for k, v in given.items()}
        )
    return Path(run(config, resume=resume))


def evaluate(
    model_dir: PathLike,
    dataset: PathLike,
    split: str = "test",
    decoding: Mapping[str, Any] | None = None,
    **options: Any,
) -> EvalResult:
    """Caption a split of a dataset with a model and score it; writes the results beside the model
    (RUN_DIR/eval/...) unless `out_dir` is given. options: metrics=, batch_size=, device=, progress=, ..."""
    from captionkit.errors import require

    require("pycocoevalcap", extra="eval")
    from captionkit.evaluation.evaluate import evaluate_model

    return evaluate_model(model_dir, dataset, split, decoding, **options)


def score(
    references: Mapping[Hashable, Sequence[str]],
    candidates: Mapping[Hashable, str | Sequence[str]],
    metrics: str | Sequence[str] | None = None,
    **options: Any,
) -> Scores:
    """pycocoevalcap's metrics of candidates {id: caption} against references {id: [caption, ...]}."""
    from captionkit.errors import require

    require("pycocoevalcap", extra="eval")
    from captionkit.evaluation.metrics import score as compute

    return compute(references, candidates, metrics, **options)


def write_report(run_dirs: Sequence[PathLike], out: PathLike = "report.html", **options: Any) -> Path:
    """One self-contained HTML page comparing evaluated runs (metrics, curves, example images)."""
    from captionkit.report import build_report

    return Path(build_report(list(run_dirs), out, **options))


def attention_map(captioner: Captioner, image: PathLike | Image.Image, out: PathLike, **decoding: Any) -> list[str]:
    """Caption one image with an attention model and write `out` (PNG): the image with one heat-map panel per
    word. Returns the caption's words."""
    from captionkit.data.images import load_image as read
    from captionkit.inference.attention import caption_with_attention, crop_fraction_of, render_attention_map

    picture = image if not isinstance(image, str | os.PathLike) else read(image)
    words, weights = caption_with_attention(captioner, picture, **decoding)
    render_attention_map(picture, words, weights, out, crop_fraction=crop_fraction_of(captioner))
    return words


def pretrain_clip(dataset: PathLike, out: PathLike, *, progress: bool = True, **settings: Any) -> Path:
    """Train a CLIP contrastively on a dataset's train split (LiT with image_tower=...); returns the CLIP directory,
    usable as encoder `clip:OUT`. settings: ClipPretrainConfig fields (epochs=, width=, ...)."""
    from captionkit.config import from_dict
    from captionkit.errors import require

    require("accelerate", extra="train")
    from captionkit.training.clip_pretrain import ClipPretrainConfig
    from captionkit.training.clip_pretrain import pretrain_clip as run

    config = from_dict(ClipPretrainConfig, settings, "pretrain_clip")  # an unknown setting lists the valid ones
    return Path(run(dataset, out, config, progress=progress))


__all__ = [
    "__version__",
    "attention_map",
    "evaluate",
    "list_models",
    "load",
    "load_dataset",
    "load_image",
    "pretrain_clip",
    "score",
    "train",
    "write_report",
    "write_synthetic_dataset",
]
