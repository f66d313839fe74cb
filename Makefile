# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Development defaults; production sets DEBUG=0 and a real SECRET_KEY.
export DEBUG ?= 1

.PHONY: run test test-fast test-live lint bench docs docs-serve install install-test migrate clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt clients/python/pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0

run: migrate
	$(PY) manage.py demo --url http://$(HOST):$(PORT)
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The tiers (docs/testing.md): the fast tier, then the live, browser and node tiers together, each run spread
# over pytest-xdist workers. A live module's tests share its servers, so they stay on one worker (loadfile).
FAST := not live and not browser and not node
FAST_WORKERS ?= 3
LIVE_WORKERS ?= 3
PYTEST_FAST = $(VENV)/bin/pytest -m "$(FAST)" -n $(FAST_WORKERS)
PYTEST_LIVE = $(VENV)/bin/pytest -m "live or browser or node" -n $(LIVE_WORKERS) --dist loadfile

test: lint
	$(PYTEST_FAST)
	$(PYTEST_LIVE)

test-fast: install-test
	$(PYTEST_FAST)

test-live: install-test
	$(PYTEST_LIVE)

# Fan-out three ways in one run (docs/performance.md); needs PostgreSQL and Redis
# (DATABASE_URL and REDIS_URL, by default the local ones .ci/run starts).
bench: install-test
	$(PY) bench/fanout.py

# The docs site (mkdocs.yml): docs/ built into site/; strict, so a broken link or anchor fails.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: install-test
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8001

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 site
