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

.PHONY: run test test-fast test-live lint bench bench-fanout bench-workers bench-storm docs docs-serve install install-test migrate lock clean

# Every install is from a lock file: each package pinned with its hashes, nothing else resolved
# (--no-deps: the lock already lists every dependency). `make lock` regenerates both lock files
# from requirements.txt and requirements-test.txt; docs/embeddings-runtime.md says more.
PIP_INSTALL := $(PY) -m pip install --require-hashes --no-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.installed: requirements.lock | $(VENV)/bin/python
	@echo "Installing the runtime dependencies from requirements.lock (a first install downloads about 140 MB)"
	$(PIP_INSTALL) -r requirements.lock
	touch $@

# requirements-test.lock holds the runtime packages too, at the same versions. The Python client is
# installed editable from its folder (a local package cannot be hashed), its dependencies from the lock.
$(VENV)/.installed-test: requirements-test.lock clients/python/pyproject.toml $(VENV)/.installed
	@echo "Installing the test dependencies from requirements-test.lock"
	$(PIP_INSTALL) -r requirements-test.lock
	$(PY) -m pip install --no-deps --no-build-isolation -e ./clients/python
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The development key's warning once, from serve, not from each command before it.
QUIET_KEY := PYTHONWARNINGS="ignore:SECRET_KEY is not set"

migrate: install
	$(QUIET_KEY) $(PY) manage.py migrate --noinput
	$(QUIET_KEY) $(PY) manage.py collectstatic --noinput --verbosity 0

run: migrate
	$(QUIET_KEY) $(PY) manage.py demo --url http://$(HOST):$(PORT)
	$(PY) manage.py serve --host $(HOST) --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The tiers (docs/testing.md): the fast tier, then the live and node tiers together, each spread over
# pytest-xdist workers (a live module's tests share its servers, so they stay on one worker: loadfile), then the
# browser tier in one process: its 2 s bounds on what a page shows were missed beside the other tiers' servers.
FAST := not live and not browser and not node
FAST_WORKERS ?= 3
LIVE_WORKERS ?= 3
PYTEST_FAST = $(VENV)/bin/pytest -m "$(FAST)" -n $(FAST_WORKERS)
PYTEST_LIVE = $(VENV)/bin/pytest -m "(live or node) and not browser" -n $(LIVE_WORKERS) --dist loadfile
PYTEST_BROWSER = $(VENV)/bin/pytest -m browser

test: lint
	$(PYTEST_FAST)
	$(PYTEST_LIVE)
	$(PYTEST_BROWSER)

test-fast: install-test
	$(PYTEST_FAST)

test-live: install-test
	$(PYTEST_LIVE)
	$(PYTEST_BROWSER)

# Issue 16's performance table from one run, about 5 minutes (docs/performance.md); needs PostgreSQL and Redis
# (DATABASE_URL and REDIS_URL, by default the local ones .ci/run starts). One part: make bench BENCH="--only latency"
# (parts: rest latency embedded fanout memory; --quick for a tiny run). Also written to bench/results.json.
BENCH ?=
bench: install-test
	$(PY) -m bench.table $(BENCH)

# The fan-out three ways (PUO Memo, naive Channels, websockets), with encodings and compression; the same databases.
bench-fanout: install-test
	$(PY) bench/fanout.py

# REST creates/s through serve with 1 worker and one per core, in one run (docs/performance.md); the same databases.
bench-workers: install-test
	$(PY) -m bench.workers --shared-socket --rounds 3 --seconds 15

# A reconnect storm: 1,000 clients, one of two instances behind nginx SIGKILLed under 50 writes/s (docs/storms.md).
# A fresh database beside DATABASE_URL's (PostgreSQL for the query rate) and a Redis of its own; needs nginx.
bench-storm: install-test
	$(PY) -m bench.storm --clients 1000 --tenants 20

# The docs site (mkdocs.yml): docs/ built into site/; strict, so a broken link or anchor fails.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: install-test
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8001

# Resolve requirements.txt and requirements-test.txt against the package index into the hashed lock files.
# requirements-overrides.txt drops a dependency the embeddings do not use (PyTorch, through sentence-transformers).
# Pins already in the lock files are kept; `make lock UV_FLAGS=--upgrade` moves everything to the latest releases.
UV_COMPILE := $(VENV)/bin/uv pip compile $(UV_FLAGS) --universal --python-version 3.11 --generate-hashes --override requirements-overrides.txt
lock: install-test
	$(UV_COMPILE) requirements.txt -o requirements.lock
	$(UV_COMPILE) -c requirements.lock --no-emit-package puomemo-client requirements-test.txt -o requirements-test.lock

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 site
