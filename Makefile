# postroom — the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_CONFIG := dev/postroom.env
PYTEST_ARGS ?=

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/postroom --config $(DEV_CONFIG) serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The servers under test run on asyncio's loop over SQLite, then the protocol suites again
# on uvloop (the `speed` extra), so both loops `serve` may run on are proven, and again
# over PostgreSQL (a throwaway server per worker, or $$POSTROOM_TEST_DATABASE_URL: see
# tests/support/storage.py), so both STORAGE backends are.
UVLOOP_SUITES := tests/smtp tests/imap tests/pop3 tests/queue tests/e2e tests/hardening
POSTGRES_SUITES := $(UVLOOP_SUITES) tests/delivery

test: $(STAMP) lint typecheck
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)
	POSTROOM_TEST_LOOP=uvloop $(BIN)/pytest -n 2 $(PYTEST_ARGS) $(UVLOOP_SUITES)
	POSTROOM_TEST_STORAGE=postgresql $(BIN)/pytest -n 2 $(PYTEST_ARGS) $(POSTGRES_SUITES)

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) dev/data .pytest_cache .mypy_cache .ruff_cache
