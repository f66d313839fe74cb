# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# serve's processes: by default one per core with REDIS_URL set, one without (the embedded default).
WORKERS ?=
# Development defaults; production sets DEBUG=0 and a real SECRET_KEY.
export DEBUG ?= 1

.PHONY: run test lint bench bench-workers docs docs-serve install install-test migrate clean

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
	$(PY) manage.py serve --host $(HOST) --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest

# Fan-out three ways in one run (docs/performance.md); needs PostgreSQL and Redis
# (DATABASE_URL and REDIS_URL, by default the local ones .ci/run starts).
bench: install-test
	$(PY) bench/fanout.py

# REST creates/s through serve with 1 worker and one per core, in one run (docs/performance.md); the same databases.
bench-workers: install-test
	$(PY) -m bench.workers --shared-socket --rounds 3 --seconds 15

# The docs site (mkdocs.yml): docs/ built into site/; strict, so a broken link or anchor fails.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: install-test
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8001

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 site
