# ninr: the two commands a newcomer needs are `make run` and `make test`.
# TORCH_SPEC picks the PyTorch build; the default is the release the project is tested with.
# Override it for another platform, e.g. `make test TORCH_SPEC='torch>=2.2'`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PRESET ?= quick
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.ninr-installed
PYTEST_ARGS ?=

.PHONY: run test test-slow test-all lint typecheck bench data demo clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[test,plot]"
	touch $(STAMP)

data: $(STAMP)
	bash scripts/fetch-data.sh $(PY)

# The main job: the poster's results (comparison table, robustness, phases) and a report under
# results/$(PRESET)/report/. --resume makes a second `make run` reuse finished runs.
WORKERS ?= 2
run: data
	$(VENV)/bin/ninr reproduce --preset $(PRESET) --resume --workers $(WORKERS)

demo: data
	$(VENV)/bin/ninr demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff, then the layer contracts of pyproject.toml ([tool.importlinter]: every package imports only the ones below it).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: data
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
