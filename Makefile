# pbx-entra: `make run` (demo on SQLite with the emulator) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432

.PHONY: install run test lint typecheck pytest postgres openapi bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

run: install
	$(BIN)/pbx-entra demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy app

# Start the local PostgreSQL cluster when it is installed but stopped.
postgres:
	@if pg_isready -q -h $(PG_HOST) -p $(PG_PORT) 2>/dev/null; then exit 0; fi; \
	if command -v pg_lsclusters >/dev/null 2>&1; then \
	  for v in $$(ls /etc/postgresql 2>/dev/null); do \
	    echo "starting PostgreSQL $$v"; \
	    pg_ctlcluster --skip-systemctl-redirect $$v main start || sudo -n pg_ctlcluster $$v main start || true; \
	  done; \
	fi; \
	for i in $$(seq 1 30); do pg_isready -q -h $(PG_HOST) -p $(PG_PORT) && exit 0; sleep 1; done; \
	echo "PostgreSQL is not reachable at $(PG_HOST):$(PG_PORT); install it or set TEST_POSTGRES_URL" >&2; exit 1

# The suite in parallel processes (pytest-xdist; each has its own emulator and databases), with
# coverage combined across them. One worker more than CPUs: the tests that wait on service
# processes, browsers and real time leave room for another. PYTEST_WORKERS=0 runs it in this
# process.
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
pytest: install postgres
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal \
	  --cov=app --cov-report=term --cov-fail-under=90 -p no:cacheprovider $(PYTEST_ARGS)

# Lint and types run beside the suite: the suite leaves part of the CPUs idle while it waits on
# service processes and browsers. Any of the three failing fails `make test`.
test: install postgres
	@$(MAKE) --no-print-directory -j3 lint typecheck pytest

openapi: install
	$(BIN)/pbx-entra openapi > openapi/openapi.json

bench: install postgres
	$(BIN)/python bench/sync_users.py

clean:
	rm -rf $(VENV) var .coverage .mypy_cache .ruff_cache
