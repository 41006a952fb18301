"""The run directory's layout: every file and folder name training, evaluation, the report and the demo share.

```
RUN_DIR/
  resolved_config.json     the run's whole configuration (training)
  log.jsonl                one JSON object per training event (read it with `read_log`)
  tensorboard/             TensorBoard event files
  checkpoints/step-N/      resumable checkpoints
  model/                   the best model directory (config.json, model.safetensors, tokenizer files)
  eval/<split>/<dataset>/<decoding>/    one evaluation, keyed by what produced it:
      predictions.json metrics.json per_item.json decoding.json scoring.json
```

`<dataset>` is the dataset's folder or file name and a hash of its resolved path, format and options
(`data-1a2b3c4d`); `<decoding>` is the decoding method and a hash of every decoding setting (`greedy-5e6f7a`).
Evaluating the same model on other data, another split or with other decoding adds a folder beside the earlier
ones; only the very same evaluation run again replaces its own folder. Imports nothing of captionkit (foundation).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

RESOLVED_CONFIG = "resolved_config.json"
LOG = "log.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
MODEL = "model"
EVAL = "eval"
# the files of one evaluation (the README's "Outputs" section lists their fields)
PREDICTIONS = "predictions.json"
METRICS = "metrics.json"
PER_ITEM = "per_item.json"
DECODING = "decoding.json"
SCORING = "scoring.json"
RESULT_FILES = (PREDICTIONS, METRICS, PER_ITEM, DECODING, SCORING)
LAYOUT_VERSION = 2  # 1: eval/<split>/ (results keyed by split alone); 2: eval/<split>/<dataset>/<decoding>/

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def _digest(data: Any, length: int) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def is_local_path(dataset: str | os.PathLike) -> bool:
    """False for what names no file (hf:NAME, a URL); True for files, folders and shard patterns."""
    text = str(dataset)
    return not (text.startswith("hf:") or "://" in text)


def dataset_identity(
    dataset: str | os.PathLike, format: str = "auto", options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What identifies a dataset: {"name", "id", "absolute", "format", "options"}.

    id = the readable name + a hash of the absolute path, format and options: the same data read another way (a
    CSV with other columns) is another dataset."""
    text = str(dataset)
    absolute = os.path.abspath(text) if is_local_path(text) else text
    name = _SLUG.sub("_", Path(text.rstrip("/")).name or text).strip("_") or "dataset"
    opts = dict(options or {})
    key = _digest({"path": absolute, "format": format, "options": opts}, 8)
    return {"name": name, "id": f"{name[:40]}-{key}", "absolute": absolute, "format": format, "options": opts}


def dataset_entry(identity: Mapping[str, Any], root: str | os.PathLike) -> dict[str, Any]:
    """The dataset as scoring.json stores it: the identity plus "path", relative to `root` (the run directory) so a
    run moved together with its data still finds it, and "absolute" for a report run from anywhere."""
    absolute = identity["absolute"]
    path = absolute
    if is_local_path(absolute):
        try:
            path = os.path.relpath(absolute, os.path.abspath(root))
        except ValueError:  # another drive (Windows): only the absolute path works
            path = absolute
    return {**identity, "path": path}


def resolve_dataset_path(entry: Mapping[str, Any] | str, root: str | os.PathLike) -> str:
    """Where a stored dataset is now: its path relative to `root` if that exists, else the absolute path.

    A plain string (results written before the dataset was stored as an entry) is resolved the same way."""
    if isinstance(entry, str):
        entry = {"path": entry, "absolute": entry}
    path, absolute = str(entry.get("path", "")), str(entry.get("absolute", ""))
    if path and is_local_path(path):
        candidate = os.path.normpath(os.path.join(root, path))
        if os.path.exists(candidate):
            return candidate
    return absolute or path


def decoding_key(settings: Mapping[str, Any]) -> str:
    """`greedy-5e6f7a`, `beam5-...`, `sample-...`, `-rerank` when reranked, `-bfloat16` / `-int8` in another number
    format: the method and a hash of every setting."""
    beams = int(settings.get("num_beams", 1) or 1)
    method = "sample" if settings.get("do_sample") else f"beam{beams}" if beams > 1 else "greedy"
    if settings.get("rerank"):
        method += "-rerank"
    number_format = settings.get("precision") or {}
    if number_format.get("quantize") or number_format.get("dtype"):
        method += f"-{number_format.get('quantize') or number_format['dtype']}"
    return f"{method}-{_digest(dict(settings), 6)}"


def results_dir(root: str | os.PathLike, split: str, dataset_id: str, decoding: str) -> Path:
    """ROOT/eval/<split>/<dataset id>/<decoding key>: where one evaluation's files go."""
    return Path(root) / EVAL / split / dataset_id / decoding


def run_root(model_dir: str | os.PathLike) -> Path:
    """The run directory a model directory belongs to: RUN_DIR for RUN_DIR/model, else the model directory itself."""
    model_dir = Path(model_dir)
    return model_dir.parent if model_dir.name == MODEL else model_dir


def find_results(root: str | os.PathLike) -> Iterator[Path]:
    """Every evaluation folder (one with metrics.json) under ROOT/eval, in path order; a hidden folder (results
    being written) is not one."""
    eval_dir = Path(root) / EVAL
    if eval_dir.is_dir():
        found = (p.parent for p in eval_dir.rglob(METRICS))
        yield from sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(eval_dir).parts))


def is_results_dir(path: str | os.PathLike) -> bool:
    """True for one evaluation's folder (it holds metrics.json)."""
    return (Path(path) / METRICS).is_file()


def owning_run(results: str | os.PathLike) -> Path | None:
    """RUN_DIR for a results folder RUN_DIR/eval/..., else None."""
    path = Path(results).resolve()
    for parent in path.parents:
        if parent.name == EVAL:
            return parent.parent
    return None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file in order ([] when it does not exist; a line cut short by a kill is skipped)."""
    path = Path(path)
    events = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The events of RUN_DIR/log.jsonl in order (a line cut short by a kill is skipped)."""
    return read_jsonl(Path(run_dir) / LOG)
