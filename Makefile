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

# The servers under test run on asyncio's loop over SQLite, then again on uvloop (the
# `speed` extra) and over PostgreSQL (a throwaway server per worker, or
# $$POSTROOM_TEST_DATABASE_URL: see tests/support/storage.py). The uvloop pass repeats
# what runs on the loop itself: every protocol's sessions and listeners, the queue, the
# deadlines. The PostgreSQL pass repeats what reads and writes the store; the store's
# contract suites (tests/store) already run on both backends in the first pass. Checks
# that are neither (DNS, HTTP parsing, the browser's view of a page, hostile bytes on the
# wire) run once, so `make test` stays under 15 minutes on 2 cores.
# Three workers on two cores: most tests wait on sockets, and the first pass took 7.5
# minutes with two, 6 with three.
WORKERS ?= 3
UVLOOP_SUITES := tests/smtp tests/imap tests/pop3 tests/managesieve tests/queue \
	tests/e2e/test_foundation.py tests/e2e/test_smtp_processes.py tests/e2e/test_imap_processes.py \
	tests/hardening tests/sieve/test_delivery.py tests/filters tests/filterd/test_rspamd.py \
	tests/web/test_web_security.py tests/transport/test_mtasts_serve.py \
	tests/transport/test_outbound_app.py tests/jmap/test_push.py tests/jmap/test_websocket.py
# What the uvloop pass leaves out of those directories: searching judges data, not the
# loop; the web listener's behaviour on the loop is test_web_security's and JMAP's
# long-lived streams' (EventSource, WebSocket).
UVLOOP_SKIP := --ignore=tests/imap/test_fulltext.py --ignore=tests/imap/test_hostile_search.py \
	--ignore=tests/imap/test_search_issue17.py
POSTGRES_SUITES := tests/smtp tests/imap tests/pop3 tests/managesieve tests/queue \
	tests/e2e/test_foundation.py tests/e2e/test_smtp_processes.py tests/e2e/test_imap_processes.py \
	tests/hardening/test_auth_cache.py tests/hardening/test_bans.py \
	tests/hardening/test_crash_safety.py tests/hardening/test_flag_durability.py \
	tests/hardening/test_storage_failures.py \
	tests/quota tests/filters tests/filterd/test_junk.py tests/sieve/test_delivery.py \
	tests/delivery tests/tls_acme/test_acme_nodes.py tests/arc/test_sealing.py \
	tests/web/test_admin_pages.py tests/web/test_app_passwords.py \
	tests/web/test_selfservice.py tests/transport/test_outbound_mtasts.py \
	tests/transport/test_outbound_app.py \
	tests/reports/test_tlsrpt_send.py tests/reports/test_tlsrpt_e2e.py \
	tests/reports/test_daily.py tests/reports/test_dmarc_intake.py tests/reports/test_dmarc_send.py \
	tests/reports/test_dmarc_e2e.py tests/jmap
# JMAP's HTTP, push and WebSocket layers read the store through the methods the other
# JMAP tests cover on PostgreSQL; the outbound queue on PostgreSQL is tests/queue's and
# tests/postgres's (claims, leases, two nodes); the web console's sessions and accounts
# on PostgreSQL are the admin, app-password and self-service pages' (test_web_auth's
# logins and lockouts run once, on SQLite).
POSTGRES_SKIP := --ignore=tests/jmap/test_http.py --ignore=tests/jmap/test_push.py \
	--ignore=tests/jmap/test_websocket.py

test: $(STAMP) lint typecheck
	$(BIN)/pytest -n $(WORKERS) $(PYTEST_ARGS)
	POSTROOM_TEST_LOOP=uvloop $(BIN)/pytest -n $(WORKERS) $(PYTEST_ARGS) $(UVLOOP_SKIP) \
		$(UVLOOP_SUITES)
	POSTROOM_TEST_STORAGE=postgresql $(BIN)/pytest -n $(WORKERS) $(PYTEST_ARGS) $(POSTGRES_SKIP) \
		$(POSTGRES_SUITES)

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) dev/data .pytest_cache .mypy_cache .ruff_cache
