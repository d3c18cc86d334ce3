# Quick start: `make run` (install + dvc repro) and `make test` (install + the whole test suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint bench paper ui

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
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
