"""Fixtures of the training tests: one thread per process (the CI machine's 2 cores are shared, and tiny models
lose more to thread hand-offs than they gain), the toy model registered, a tiny dataset."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # training_toy, also imported by the subprocess entry point toy_cli.py

import training_toy  # noqa: E402,F401  (registers the toy model, tokenizer and encoder)


@pytest.fixture()
def toy_dataset(tmp_path: Path) -> Path:
    return training_toy.write_toy_dataset(tmp_path / "data")


def subprocess_env() -> dict[str, str]:
    """Environment of a training subprocess: offline, one thread, the repository importable."""
    repo = str(HERE.parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": path,
        "TOKENIZERS_PARALLELISM": "false",
    }
