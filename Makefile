# Two commands matter: `make demo` and `make test`. Each creates .venv on first use.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The first Python 3.11+ on PATH.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: demo test lint typecheck imports unit reliability clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "approval-bridge needs Python 3.11 or newer on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/approval-bridge demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# Two workers, each taking whole files (their module fixtures are shared): most tests wait on
# timers and sockets, so two halve the wall time even on two cores.
unit: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck imports unit

# The reliability suite at its full sizes (issue 6; about 40 minutes): `make test` runs it reduced.
# Its figures go to docs/reliability-figures.json, from which docs/reliability.md is written.
reliability: $(STAMP)
	APPROVAL_BRIDGE_RELIABILITY=long \
	APPROVAL_BRIDGE_RELIABILITY_REPORT=docs/reliability-figures.json \
	$(BIN)/pytest -p no:cacheprovider tests/reliability

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
