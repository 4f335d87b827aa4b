# Two-command set-up (README "Quick start"). A local virtual environment in .venv;
# torch is installed first, from the CPU wheel index (PyPI as the extra index for its
# dependencies), so pip never pulls the multi-GB CUDA build that PyPI's plain `torch` is.
# Another build: make setup TORCH_INDEX=https://download.pytorch.org/whl/cu124 TORCH_SPEC=torch
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_EXTRA_INDEX ?= https://pypi.org/simple
# an unreachable index is skipped quickly rather than retried for minutes
PIP_NET ?= --timeout 20 --retries 1

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_NET) "$(TORCH_SPEC)" --index-url $(TORCH_INDEX) --extra-index-url $(TORCH_EXTRA_INDEX)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/nasrank run --out runs/demo

test: setup
	$(PY) -m pytest -q -n 2 tests

clean:
	rm -rf $(VENV) runs
