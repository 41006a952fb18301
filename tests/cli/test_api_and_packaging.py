"""The public API (cheap to import, what the notebooks use) and the packaging: a missing extra is a one-line hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import captionkit
from captionkit.cli import main
from captionkit.errors import MissingExtraError, require

REPO = Path(__file__).resolve().parents[2]


def test_importing_captionkit_imports_no_torch() -> None:
    code = "import sys, captionkit; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_public_api() -> None:
    for name in ("load", "train", "evaluate", "load_dataset", "list_models", "score", "write_report"):
        assert callable(getattr(captionkit, name)) and name in captionkit.__all__
    models = captionkit.list_models()
    assert models["tiny-show-tell-merge"]["type"] == "show-tell-merge" and models["tiny-show-tell-merge"]["meant_for"]


def test_notebooks_use_only_the_public_api() -> None:
    import json

    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "from captionkit." not in code and "import captionkit." not in code, notebook.name


def test_require_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'captionkit\[train\]'"):
        require("accelerate", extra="train")
    assert isinstance(MissingExtraError("x"), ImportError)


def test_require_does_not_hide_a_broken_install(tmp_path, monkeypatch) -> None:
    """An ImportError raised inside an installed package is that package's problem, not a missing extra."""
    (tmp_path / "installed_but_broken.py").write_text("import a_dependency_that_is_gone\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as raised:
        require("installed_but_broken", extra="train")
    assert not isinstance(raised.value, MissingExtraError) and raised.value.name == "a_dependency_that_is_gone"


@pytest.mark.parametrize(
    ("module", "extra", "argv"),
    [
        ("accelerate", "train", ["train", "--preset", "tiny-clipcap-mlp", "--dataset", "D", "--out", "{tmp}/r"]),
        ("pycocoevalcap", "eval", ["score", "{tmp}/c.json", "--references", "R"]),
        ("fastapi", "serve", ["serve", "M"]),
    ],
)
def test_a_missing_extra_is_one_line_with_the_install_command(monkeypatch, tmp_path, capsys, module, extra, argv):
    monkeypatch.setitem(sys.modules, module, None)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"pip install 'captionkit[{extra}]'" in err and "Traceback" not in err


def test_license_is_the_declared_mit() -> None:
    assert 'license = {text = "MIT"}' in (REPO / "pyproject.toml").read_text()
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


EXTRAS_ONLY = ["accelerate", "tensorboard", "pycocoevalcap", "fastapi", "uvicorn", "webdataset", "datasets", "nbclient"]


def test_the_core_install_captions(tiny_model_dir, tmp_path) -> None:
    """`caption` with none of the extras' packages importable (a fresh process: nothing imported before)."""
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.jpg")
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in EXTRAS_ONLY)
    code = (
        f"import sys; {block}; from captionkit.cli import main; "
        f"sys.exit(main(['caption', {str(tiny_model_dir)!r}, {str(tmp_path / 'a.jpg')!r}, '--max-new-tokens', '3']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(tmp_path / "a.jpg") + "\t")
