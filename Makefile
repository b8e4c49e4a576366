# Two commands set up a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install lock test lint demo bench clean system test-system services

# Everything comes from the committed lock (exact versions, with hashes), so a fresh clone
# installs what CI tested. `make lock` refreshes it on purpose.
LOCK := requirements/dev.lock
RUNTIME_LOCK := requirements/runtime.lock
PIP := $(BIN)/python -m pip --disable-pip-version-check
COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) install -q --require-hashes --no-deps -r $(LOCK)
	@$(PIP) install -q --no-deps --no-build-isolation -e .
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

# Re-resolve every dependency to the newest releases pyproject.toml allows (the dev lock:
# runtime + dev tools; the runtime lock: what the Docker images install, the same versions).
# `make lock UPGRADE=` after adding a dependency keeps every other pin as it is.
# Then run `make test` and commit pyproject.toml and requirements/ together.
UPGRADE ?= --upgrade
lock: $(STAMP)
	$(COMPILE) $(UPGRADE) pyproject.toml --extra dev -o $(LOCK)
	$(COMPILE) pyproject.toml requirements/build.in -c $(LOCK) -o $(RUNTIME_LOCK)
	@rm -f $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
