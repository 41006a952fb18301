"""The two notebooks run top to bottom with tiny settings (CAPTIONKIT_NOTEBOOK_TINY=1) and write their results;
the committed files carry no outputs."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from captionkit import rundir

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL_NAME = "captionkit-tests"
NAMES = ["VGG16_LSTM_training.ipynb", "CLIPCap_training.ipynb"]


@pytest.fixture
def notebook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernel spec for this very interpreter in a private JUPYTER_PATH, so the kernel imports the captionkit under
    test whatever kernels the machine has; the notebooks' tiny mode; offline hub. Returns the working directory."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "captionkit tests", "language": "python"}), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CAPTIONKIT_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    work = tmp_path / "work"
    work.mkdir()
    return work


def execute(name: str, work: Path) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel with `work` as its working directory; a failing cell raises
    CellExecutionError with the cell's traceback."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=600, resources={"metadata": {"path": str(work)}})
    client.execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def assert_metrics(path: Path) -> dict[str, float]:
    metrics = json.loads(path.read_text(encoding="utf-8"))
    for name in ("Bleu_4", "CIDEr", "object_f1"):  # object_f1: the demo data's scenes were found and used
        assert isinstance(metrics.get(name), float) and math.isfinite(metrics[name]), (name, metrics)
    return metrics


def assert_run(run: Path, report: bool = True) -> None:
    assert (run / "model" / "config.json").is_file()
    (results,) = rundir.find_results(run)  # RUN/eval/test/<dataset>/<decoding>
    assert results.relative_to(run).parts[:2] == ("eval", "test")
    assert_metrics(results / "metrics.json")
    predictions = json.loads((results / "predictions.json").read_text(encoding="utf-8"))
    assert predictions and all(p["image_id"].startswith("synth_") for p in predictions)
    if report:
        assert (run / "report.html").stat().st_size > 0


def assert_shown(nb: nbformat.NotebookNode, images: int) -> None:
    """The caption figure (and the attention map) reached the notebook as PNG outputs."""
    shown = [o for o in outputs(nb) if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert len(shown) >= images, [o.get("output_type") for o in outputs(nb)]


@pytest.mark.slow
def test_vgg16_lstm_notebook_runs(notebook_env: Path) -> None:
    nb = execute("VGG16_LSTM_training.ipynb", notebook_env)
    runs = notebook_env / "runs" / "notebook-vgg16-lstm"
    for name, model_type in (("merge", "show-tell-merge"), ("attention", "show-attend-tell")):
        assert_run(runs / name, report=False)
        assert json.loads((runs / name / "resolved_config.json").read_text(encoding="utf-8"))["model"]["type"] == \
            model_type
    assert (runs / "attention.png").stat().st_size > 0 and (runs / "report.html").stat().st_size > 0
    assert_shown(nb, images=2)


@pytest.mark.slow
def test_clipcap_notebook_runs(notebook_env: Path) -> None:
    nb = execute("CLIPCap_training.ipynb", notebook_env)
    run = notebook_env / "runs" / "notebook-clipcap-mlp"
    assert_run(run)
    clip_dir = (notebook_env / "runs" / "notebook-clip").resolve()
    config = json.loads((run / "resolved_config.json").read_text(encoding="utf-8"))
    assert config["encoder"] == f"clip:{clip_dir}"  # ClipCap read the CLIP the notebook pretrained
    assert (clip_dir / "config.json").is_file()
    assert_shown(nb, images=1)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_clean(name: str) -> None:
    """Valid nbformat, no stored outputs, and the demo data (not real Flickr8k) by default."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert any("USE_REAL_FLICKR8K = False" in cell.source.splitlines() for cell in code)
