# Kassa: the two commands of the README quick start are `make run` and `make test`.
# Everything they need (virtualenv, Python packages, Debian's Chromium) is installed here,
# so they work on a fresh machine and in CI (.ci/run) alike.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml or the lock file is newer than this stamp.
STAMP := $(VENV)/.installed
# Exact versions of every package, dev tools included: what install, run and test install.
LOCK := requirements.lock
PIP := $(BIN)/python -m pip --disable-pip-version-check

HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=
BENCH_ARGS ?=
LOCK_ARGS ?=
# Coverage of app/ in `make test`; the floor applies to the whole suite only, so a run narrowed
# with PYTEST_ARGS reports coverage without failing on it. A full CI run (PostgreSQL, Celery,
# browser tests) measured 91.3%; runs without TEST_DATABASE_URL skip the PostgreSQL tests.
COV_FLOOR ?= 85
COV_ARGS ?= --cov --cov-report=term $(if $(PYTEST_ARGS),,--cov-fail-under=$(COV_FLOOR))

.PHONY: help install lock run serve test bench lint clean distclean chromium worker beat reconcile translations

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) install --quiet -r $(LOCK)
	$(PIP) install --quiet --no-deps -e .
	@touch $@

install: $(STAMP)  ## create .venv and install the locked dependencies, dev tools and the project

# Keeps every pin it can and resolves only what pyproject.toml changed; LOCK_ARGS=--upgrade
# moves everything to the newest allowed versions (LOCK_ARGS='--upgrade-package stripe': one).
lock: | $(BIN)/python  ## re-resolve requirements.lock from pyproject.toml (after changing dependencies)
	$(PIP) install --quiet 'pip-tools>=7.4'
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file $(LOCK) $(LOCK_ARGS) pyproject.toml

chromium:  ## install Debian's Chromium for the browser tests if it is missing
	@scripts/ensure-chromium.sh

run: $(STAMP)  ## migrate, seed the demo store and serve it on http://$(HOST):$(PORT)
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/flask --app wsgi seed-demo
	@# Sandbox redirects and webhooks go to PUBLIC_BASE_URL: follow HOST/PORT unless it is set.
	PUBLIC_BASE_URL="$${PUBLIC_BASE_URL:-http://$(HOST):$(PORT)}" \
	  $(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT)

serve: $(STAMP)  ## production server: migrate, then gunicorn -c gunicorn.conf.py (see docs/DEPLOYMENT.md)
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

worker: $(STAMP)  ## a Celery worker for the jobs (needs CELERY_BROKER_URL; make run needs none)
	$(BIN)/celery -A app.jobs.worker worker --loglevel=INFO

beat: $(STAMP)  ## Celery beat: reconcile, expiry, webhook retries, receipt resends (needs CELERY_BROKER_URL)
	$(BIN)/celery -A app.jobs.worker beat --loglevel=INFO

reconcile: $(STAMP)  ## bring open payments and pending refunds up to date from the gateways
	$(BIN)/flask --app wsgi reconcile

test: $(STAMP) chromium  ## the whole suite, browser tests included (PYTEST_ARGS=... to narrow)
	@# Never point the suite at a server by ourselves: a database URL is the user's choice.
	@if [ -z "$${TEST_DATABASE_URL:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
	  echo "note: PostgreSQL answers on 127.0.0.1:5432 but TEST_DATABASE_URL is unset, so the"; \
	  echo "      tests marked 'postgres' are skipped. To run them as well (see README):"; \
	  echo "      TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres make test"; \
	fi
	$(BIN)/pytest $(COV_ARGS) $(PYTEST_ARGS)

bench: $(STAMP)  ## run the benchmarks in bench/ (BENCH_ARGS=... passed on)
	@if [ ! -f bench/__main__.py ]; then \
	  echo "make bench: bench/__main__.py is missing, so there are no benchmarks to run yet" >&2; \
	  exit 1; \
	fi
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)  ## ruff check, ruff format --check, mypy (app/), import-linter (the layers)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:  ## remove caches and test output (keeps .venv and instance/)
	rm -rf .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .coverage test-results bench/out build dist
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -type d -name '*.egg-info' -exec rm -rf {} +

distclean: clean  ## also remove .venv (instance/ with the database and secret key stays)
	rm -rf $(VENV)

translations: $(STAMP)  ## extract the customer pages' strings, update the catalogs (app/translations), compile them
	$(BIN)/pybabel extract -F babel.cfg -k _l -k N_ --no-location -o app/translations/messages.pot .
	$(BIN)/pybabel update -i app/translations/messages.pot -d app/translations --width 100
	$(BIN)/pybabel compile -d app/translations
