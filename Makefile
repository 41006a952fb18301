# Two entry points: `make demo` and `make test`. Both create/update .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench clean

install: $(STAMP)

# constraints.txt pins what lies on this machine's disk (torch 2.13.0 CPU): fast, never a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@! $(PY) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)" \
	  || (echo "torchvision is installed in $(VENV): it breaks transformers beside the CPU torch; remove it" && exit 1)
	touch $(STAMP)

demo: install
	$(VENV)/bin/captionkit demo --out runs/demo

# Lint, format and the package layers (pyproject.toml) are part of the tests.
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/decode.py

clean:
	rm -rf $(VENV) runs
