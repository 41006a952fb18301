"""Read what a report shows from run directories: eval results, training curves, decoding settings, references."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit.errors import DatasetError
from captionkit.models.encoders import relative_spec

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """One run directory, as the report needs it (every part optional except the eval results of `split`)."""

    path: Path
    name: str
    model_type: str = ""
    encoder: str = ""
    split: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    per_item: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: dict[str, str] = field(default_factory=dict)
    decoding: dict[str, Any] = field(default_factory=dict)
    scoring: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # quantity -> [(epoch, value)]
    config: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc


def available_splits(run_dir: Path) -> list[str]:
    """Splits with an eval/<split>/metrics.json, "test" first."""
    found = sorted(p.parent.name for p in (run_dir / "eval").glob("*/metrics.json"))
    return sorted(found, key=lambda s: (s != "test", s))


def read_curves(log_path: Path) -> dict[str, list[tuple[float, float]]]:
    """Per-epoch curves from log.jsonl: train_loss (mean of the epoch's step losses, or the epoch event's own),
    dev_loss and every dev_<metric> of the epoch events. Lines cut short by a killed run are skipped."""
    step_losses: dict[float, list[float]] = {}
    curves: dict[str, list[tuple[float, float]]] = {}
    if not log_path.is_file():
        return curves
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        epoch = event.get("epoch")
        if not isinstance(event, dict) or not isinstance(epoch, (int, float)):
            continue
        if event.get("event") == "step" and isinstance(event.get("train_loss"), (int, float)):
            step_losses.setdefault(epoch, []).append(float(event["train_loss"]))
        elif event.get("event") == "epoch":
            for key, value in event.items():
                if (key == "train_loss" or key.startswith("dev_")) and isinstance(value, (int, float)):
                    curves.setdefault(key, []).append((float(epoch), float(value)))
    if "train_loss" not in curves and step_losses:
        curves["train_loss"] = [(float(e), sum(v) / len(v)) for e, v in sorted(step_losses.items())]
    return {k: sorted(v) for k, v in curves.items()}


def load_run(run_dir: str | Path, split: str | None = None) -> RunData:
    """A run directory's report data for `split` (default: test if evaluated, else the first evaluated split)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory; expected a run directory with eval/<split>/metrics.json")
    splits = available_splits(path)
    if not splits:
        raise DatasetError(
            f"{path}: no eval/<split>/metrics.json; run `captionkit evaluate {path / 'model'} "
            "--dataset ... --split test` first"
        )
    split = split or splits[0]
    if split not in splits:
        raise DatasetError(f"{path}: split {split!r} not evaluated; evaluated: {', '.join(splits)}")
    ev = path / "eval" / split
    config = _read_json(path / "resolved_config.json", {}) or {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    predictions = {str(p["image_id"]): p["caption"] for p in _read_json(ev / "predictions.json", [])}
    return RunData(
        path=path,
        name=path.resolve().name,
        model_type=str(model.get("type", "")),
        encoder=relative_spec(str(config.get("encoder", "")), path) or "",
        split=split,  # no machine's absolute paths
        metrics={k: float(v) for k, v in _read_json(ev / "metrics.json").items() if isinstance(v, (int, float))},
        per_item={str(k): v for k, v in (_read_json(ev / "per_item.json", {}) or {}).items()},
        predictions=predictions,
        decoding=_read_json(ev / "decoding.json", {}) or {},
        scoring=_read_json(ev / "scoring.json", {}) or {},
        curves=read_curves(path / "log.jsonl"),
        config=config,
    )


def unique_names(runs: list[RunData]) -> None:
    """Make display names unique: runs with the same folder name get their parent folder's name in front."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    for run in runs:
        if counts[run.name] > 1:
            run.name = f"{run.path.resolve().parent.name}/{run.name}"


def load_references(runs: list[RunData]) -> tuple[dict[str, list[str]], dict[str, Path], str | None]:
    """References and image paths of the runs' dataset (from the first resolved_config.json that names one).

    Returns a note instead of failing when the dataset cannot be read: the report then shows captions only."""
    for run in runs:
        dataset = run.config.get("dataset")
        if not dataset:
            continue
        try:
            from captionkit.data.formats import load_dataset

            data = load_dataset(
                dataset, run.config.get("dataset_format", "auto"), **(run.config.get("dataset_options") or {})
            )
        except (DatasetError, OSError, TypeError) as exc:
            log.warning("report: cannot read dataset %s (%s); examples without images and references", dataset, exc)
            return {}, {}, f"dataset {dataset} could not be read ({exc}); examples show captions only"
        return (
            {r.image_id: list(r.captions) for r in data.records},
            {r.image_id: r.image_path for r in data.records},
            None,
        )
    return {}, {}, "no resolved_config.json names a dataset; examples show captions only"


def load_run_scenes(runs: list[RunData]) -> dict[str, dict[str, Any]]:
    """The true scenes of a synthetic dataset (scenes.json beside it) the runs were scored on, else {}."""
    from captionkit.evaluation.object_f1 import load_scenes

    for run in runs:
        dataset = run.config.get("dataset")
        if dataset and (Path(dataset) / "scenes.json").is_file():
            try:
                return load_scenes(dataset)
            except DatasetError as exc:
                log.warning("report: %s; examples without true scenes", exc)
                return {}
    return {}
