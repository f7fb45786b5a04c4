# Two commands do everything on a fresh machine (both idempotent):
#   make demo   set up what is missing, then run the main job
#   make test   set up what is missing, then lint, type-check and run every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SYSTEM_EXTRAS ?=

.PHONY: all setup venv system images demo test lint typecheck unit cleanup bench

all: test

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing the package and its test tools into $(VENV)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

system: venv
	@bash tools/ensure-system.sh $(BIN)/python $(SYSTEM_EXTRAS)

# Present images are kept; missing ones are pulled, or built offline when no
# registry answers.
images: system
	@$(BIN)/dockermagic images

setup: images

demo: setup
	@$(BIN)/python tools/demo.py

lint: venv
	@$(BIN)/ruff check dockermagic tests benchmarks tools
	@$(BIN)/ruff format --check dockermagic tests benchmarks tools
	@$(BIN)/mypy

test: setup lint
	@$(BIN)/pytest

unit: venv
	@$(BIN)/pytest tests/unit

cleanup: venv
	@$(BIN)/dockermagic cleanup --all

bench: setup
	@$(BIN)/python benchmarks/latency.py
