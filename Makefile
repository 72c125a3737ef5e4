# The two quickstart commands are `make run` and `make test`; see README.md.
SHELL := /bin/bash
# The first Python >= 3.12 on PATH, else one installed by pyenv (whose shims a bare PATH lacks).
PYTHON ?= $(shell for p in python3.13 python3.12 python3 python $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
N ?= 1000000
ROUNDS ?= 3

.PHONY: install run test test-fast lint format bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is needed (python3.12 on PATH)."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

run: install  ## the whole stack with demo data: Redis, migrations, seed, the web server (uvicorn), RQ worker, sweeper
	scripts/services.sh redis
	$(BIN)/python scripts/run.py

test: install  ## every test, against real PostgreSQL, Redis, RQ workers, the web server, S3, Chromium and LibreOffice
	scripts/services.sh postgres redis chromium libreoffice fonts nginx
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install  ## the tests that need no worker process, browser or slow run (PostgreSQL and Redis all the same)
	scripts/services.sh postgres redis
	$(BIN)/pytest -m "not integration and not browser and not slow" $(PYTEST_ARGS)

matrix: install  ## the unit tests and a PostgreSQL subset on Django 5.2, 6.0 and 6.1, on each Python 3.12+ here (noxfile.py)
	scripts/services.sh postgres redis
	$(BIN)/nox $(NOX_ARGS)

lint: install  ## ruff's lint and format check, and mypy (strict, on the modules pyproject.toml lists)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## the benchmark: N=1000000 by default
	scripts/services.sh postgres redis
	$(BIN)/python bench/run.py --rows $(N) --rounds $(ROUNDS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
