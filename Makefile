# The two commands of the README: `make dev` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: dev test unit integration e2e chaos seed bench install clean lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start broker check, localstripe, the four services and the gateway on SQLite under var/.
dev: $(STAMP)
	$(BIN)/python -m deploy.devstack

## Demo data (run by `make dev` on an empty database).
seed: $(STAMP)
	$(BIN)/python -m services.billing.seed

## Every test: the architecture's rules (lint), unit, integration (real RabbitMQ + PostgreSQL) and end-to-end;
## the 25 slowest are listed at the end, where a suite that has grown slow shows what to move to `make chaos`.
test: lint
	$(BIN)/python -m pytest -p no:cacheprovider --durations=25 tests

## Lint, import order and format (ruff), the import contracts between the services (import-linter), types (mypy).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

## Fault tests at full size: kill -9 under webhooks, a broker restart, dropped connections, a dead replica.
## (`make test` runs the same tests smaller.) Counts land in test-artifacts/chaos-report.json.
chaos: $(STAMP)
	CHAOS_SCALE=full $(BIN)/python -m pytest -p no:cacheprovider tests/chaos

clean:
	rm -rf $(VENV) var/*.sqlite3* var/mail var/logs

## Every benchmark against a baseline measured side by side in the same run (not a test): starts its own
## stack on PostgreSQL and a throwaway vhost; writes bench/results/: results.json, report.md, results.png.
## Installs the load generator (wrk) and pgbench first when missing (Debian/Ubuntu; sudo when not root).
bench: $(STAMP)
	@command -v wrk >/dev/null && command -v pgbench >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk postgresql-client; }
	$(BIN)/python -m bench $(BENCH_ARGS)
