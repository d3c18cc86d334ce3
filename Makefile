# Quick start: `make run` (install + dvc repro) and `make test` (install + the whole test suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint bench paper ui

# --no-compile: pip would byte-compile every installed module (torch's thousands included); Python compiles
# the ones a run imports on first import instead. Measured on 2 cores (AMD EPYC, 2026-12-08): install and
# a first `import torch, mlflow, optuna, torchvision, dvc.repo` 147 s against 217 s.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --no-compile -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	dvc repro

test: $(BIN)/.installed
	$(BIN)/ruff check src pipeline tests benchmarks
	$(BIN)/pytest -q --durations=15

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.run

ui: $(BIN)/.installed
	$(BIN)/batchout ui
