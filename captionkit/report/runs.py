"""Read what a report shows: every evaluation of the runs (metrics, predictions, the dataset each was scored on),
training curves from log.jsonl, decoding settings, and each dataset's references and images."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit import rundir
from captionkit.errors import DatasetError
from captionkit.models.encoders import relative_spec

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """One row of the report: one evaluation (a results folder) of one run."""

    path: Path  # the run directory (or `evaluate --out` folder) the results belong to
    name: str
    results: Path = Path()
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
    dataset: dict[str, Any] = field(default_factory=dict)  # scoring.json's dataset entry (rundir.dataset_entry)
    dataset_path: str | None = None  # where that dataset is now; None when the results do not say

    @property
    def dataset_key(self) -> str:
        """The same for two rows exactly when they were scored on the same data."""
        return str(self.dataset.get("id") or self.dataset_path or "unknown")

    @property
    def dataset_name(self) -> str:
        return str(self.dataset.get("name") or (Path(self.dataset_path).name if self.dataset_path else "unknown"))


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc


def _split_of(results: Path, root: Path) -> str:
    """ROOT/eval/<split>/... -> <split>."""
    return results.relative_to(root / rundir.EVAL).parts[0]


def read_curves(log_path: Path) -> dict[str, list[tuple[float, float]]]:
    """Per-epoch curves from log.jsonl (read with rundir.read_jsonl): train_loss (mean of the epoch's step losses,
    or the epoch event's own), dev_loss and every dev_<metric> of the epoch events."""
    step_losses: dict[float, list[float]] = {}
    curves: dict[str, list[tuple[float, float]]] = {}
    for event in rundir.read_jsonl(log_path):
        epoch = event.get("epoch")
        if not isinstance(epoch, (int, float)):
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


def _no_results(path: Path) -> DatasetError:
    """The refusal for a folder without evaluations, naming commands that exist for what the folder is."""
    if (path / rundir.MODEL).is_dir():
        evaluate = f"captionkit evaluate {path / rundir.MODEL} --dataset DATA --split test"
    elif (path / "config.json").is_file():  # a model directory of its own: evaluate writes into it
        evaluate = f"captionkit evaluate {path} --dataset DATA --split test"
    else:
        evaluate = f"captionkit evaluate MODEL_DIR --dataset DATA --split test --out {path}"
    return DatasetError(
        f"{path}: no evaluation results (eval/<split>/.../metrics.json); run `{evaluate}` first, "
        f"then `captionkit report {path}`"
    )


def result_folders(target: str | Path, split: str | None = None) -> list[Path]:
    """The results folders a report argument stands for: one results folder itself, or every evaluation of `split`
    in a run directory (default: test if evaluated, else the first evaluated split). RUN/model stands for RUN."""
    path = Path(target)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory; expected a run directory (with eval/) or a results folder")
    if rundir.is_results_dir(path):
        return [path]
    if path.name == rundir.MODEL and not (path / rundir.EVAL).is_dir() and (path.parent / rundir.EVAL).is_dir():
        log.info("report: %s is the model of run %s: showing the run's evaluations", path, path.parent)
        path = path.parent
    found = list(rundir.find_results(path))
    if not found:
        raise _no_results(path)
    splits = sorted({_split_of(r, path) for r in found}, key=lambda s: (s != "test", s))
    split = split or splits[0]
    chosen = [r for r in found if _split_of(r, path) == split]
    if not chosen:
        raise DatasetError(
            f"{path}: split {split!r} not evaluated; evaluated: {', '.join(splits)} (choose one of those splits)"
        )
    return chosen


def load_result(results: str | Path) -> RunData:
    """One results folder, with what its run directory (the folder above eval/) adds: config, curves, name."""
    results = Path(results)
    root = rundir.owning_run(results) or results
    config = _read_json(root / rundir.RESOLVED_CONFIG, {}) or {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    scoring = _read_json(results / rundir.SCORING, {}) or {}
    entry = scoring.get("dataset")
    if isinstance(entry, str):  # results written before the dataset was stored with its identity
        entry = {"name": Path(entry).name, "path": entry, "absolute": entry}
    entry = entry if isinstance(entry, dict) else {}
    predictions = {str(p["image_id"]): p["caption"] for p in _read_json(results / rundir.PREDICTIONS, [])}
    metrics = _read_json(results / rundir.METRICS, {}) or {}
    return RunData(
        path=root,
        name=root.resolve().name,
        results=results,
        model_type=str(model.get("type", "")),
        encoder=relative_spec(str(config.get("encoder", "")), root) or "",  # no machine's absolute paths
        split=str(scoring.get("split") or (_split_of(results, root) if root != results else "")),
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        per_item={str(k): v for k, v in (_read_json(results / rundir.PER_ITEM, {}) or {}).items()},
        predictions=predictions,
        decoding=_read_json(results / rundir.DECODING, {}) or {},
        scoring=scoring,
        curves=read_curves(root / rundir.LOG),
        config=config,
        dataset=entry,
        dataset_path=rundir.resolve_dataset_path(entry, root) if entry else None,
    )


def load_runs(targets: list[str | Path], split: str | None = None) -> list[RunData]:
    """Every row the report shows for its arguments (run directories or results folders)."""
    return [load_result(r) for t in targets for r in result_folders(t, split)]


def unique_names(runs: list[RunData]) -> None:
    """Make display names unique: a run with several evaluations gets each one's dataset and decoding after its
    name; runs with the same folder name get their parent folder's name in front."""
    per_run: dict[Path, int] = {}
    for run in runs:
        per_run[run.path.resolve()] = per_run.get(run.path.resolve(), 0) + 1
    for run in runs:
        if per_run[run.path.resolve()] > 1:
            run.name = f"{run.name} [{run.dataset_name} {run.split}, {run.results.name}]"
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    for run in runs:
        if counts[run.name] > 1:
            run.name = f"{run.path.resolve().parent.name}/{run.name}"


@dataclass
class DatasetView:
    """What the examples of one dataset need: its references, image paths and (synthetic data) true scenes."""

    name: str
    path: str | None
    references: dict[str, list[str]] = field(default_factory=dict)
    image_paths: dict[str, Path] = field(default_factory=dict)
    scenes: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str | None = None


def load_dataset_view(run: RunData) -> DatasetView:
    """The dataset a row was scored on, read the way evaluate read it (format and options from scoring.json).

    A dataset that cannot be read gives a note instead of an error: the report then shows its captions only."""
    view = DatasetView(run.dataset_name, run.dataset_path)
    if not run.dataset_path:
        view.note = f"{run.results}: scoring.json names no dataset; examples show captions only"
        return view
    from captionkit.data.formats import load_dataset
    from captionkit.evaluation.object_f1 import dataset_scenes

    try:
        view.scenes = dataset_scenes(run.dataset_path) or {}
    except DatasetError as exc:
        log.warning("report: %s; examples without true scenes", exc)
    try:
        data = load_dataset(run.dataset_path, run.dataset.get("format", "auto"), **(run.dataset.get("options") or {}))
    except (DatasetError, OSError, TypeError) as exc:
        log.warning("report: cannot read dataset %s (%s); its examples without images and references", view.path, exc)
        view.note = f"dataset {view.path} could not be read ({exc}); examples show captions only"
        return view
    view.references = {r.image_id: list(r.captions) for r in data.records}
    view.image_paths = {r.image_id: r.image_path for r in data.records}
    return view


def data_mismatch(runs: list[RunData]) -> str | None:
    """A warning when the rows were not all scored on the same images of the same data (dataset, split, images)."""
    groups: dict[tuple[str, str, frozenset[str]], list[RunData]] = {}
    for run in runs:
        groups.setdefault((run.dataset_key, run.split, frozenset(run.predictions)), []).append(run)
    if len(groups) < 2:
        return None
    parts = [
        f"{', '.join(r.name for r in rows)}: {rows[0].dataset_name} ({rows[0].dataset_path or 'not recorded'}), "
        f"{len(rows[0].predictions)} {rows[0].split} images"
        for rows in groups.values()
    ]
    return "the rows were scored on different data, so their metrics are not comparable across groups: " + "; ".join(
        parts
    )
