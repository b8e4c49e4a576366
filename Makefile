# Two commands set up a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint demo bench clean system test-system services

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# System packages (Chromium for the browser engine) when they are missing.
system:
	@bash scripts/ensure-system.sh

# The services the integration tests use (PgBouncer, Redis, the Pub/Sub and GCS emulators),
# started from local binaries when not running; the test fixtures do the same on demand.
services: install
	@$(BIN)/python -m tests.services up >/dev/null

test-system:
	@bash scripts/ensure-system.sh tests

test: install test-system services
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: install system
	$(BIN)/python -m examples.aqua.demo

bench: install test-system
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
