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

# The servers under test run on asyncio's loop, then the protocol suites again on uvloop
# (the `speed` extra), so both loops `serve` may run on are proven.
UVLOOP_SUITES := tests/smtp tests/imap tests/pop3 tests/queue tests/e2e tests/hardening

test: $(STAMP) lint typecheck
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)
	POSTROOM_TEST_LOOP=uvloop $(BIN)/pytest -n 2 $(PYTEST_ARGS) $(UVLOOP_SUITES)

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) dev/data .pytest_cache .mypy_cache .ruff_cache
