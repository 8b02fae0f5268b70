# postroom — the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two install stamps: `make run` installs postroom and what serving needs (no test or lint
# tools, no psycopg: STORAGE=postgresql wants the `postgres` extra); `make test` installs
# the `dev` extra, a superset, so it satisfies `make run` as well.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
DEV_CONFIG := dev/postroom.env
PYTEST_ARGS ?=
PIP := $(BIN)/pip --disable-pip-version-check

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	@echo "make: creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing postroom and the libraries serving needs into $(VENV)"
	@echo "make: (about 30 packages the first time, listed by pip below)"
	$(PIP) install -e .
	@touch $@
	@echo "make: installed; starting postroom with $(DEV_CONFIG)"

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing postroom with its test and lint tools (the dev extra) into $(VENV)"
	$(PIP) install --quiet --upgrade pip
	$(PIP) install -e '.[dev]'
	@touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/postroom --config $(DEV_CONFIG) serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The servers under test run on asyncio's loop over SQLite, then the protocol suites again
# on uvloop (the `speed` extra), so both loops `serve` may run on are proven, and again
# over PostgreSQL (a throwaway server per worker, or $$POSTROOM_TEST_DATABASE_URL: see
# tests/support/storage.py), so both STORAGE backends are.
UVLOOP_SUITES := tests/smtp tests/checks tests/imap tests/pop3 tests/queue tests/e2e tests/hardening tests/filterd tests/filters tests/quota \
	tests/managesieve tests/sieve/test_delivery.py tests/arc tests/web \
	tests/transport/test_outbound_mtasts.py tests/transport/test_outbound_dane.py tests/transport/test_outbound_app.py
POSTGRES_SUITES := $(UVLOOP_SUITES) tests/delivery tests/tls_acme \
	tests/reports/test_tlsrpt_unit.py tests/reports/test_tlsrpt_send.py tests/reports/test_tlsrpt_e2e.py \
	tests/reports/test_daily.py tests/reports/test_dmarc_intake.py tests/reports/test_dmarc_send.py \
	tests/reports/test_dmarc_e2e.py

test: $(STAMP) lint typecheck
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)
	POSTROOM_TEST_LOOP=uvloop $(BIN)/pytest -n 2 $(PYTEST_ARGS) $(UVLOOP_SUITES)
	POSTROOM_TEST_STORAGE=postgresql $(BIN)/pytest -n 2 $(PYTEST_ARGS) $(POSTGRES_SUITES)

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) dev/data .pytest_cache .mypy_cache .ruff_cache
