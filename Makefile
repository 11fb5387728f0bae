# The two commands of the README: `make dev` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: dev test unit integration e2e seed bench install clean lint

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

## Every test: unit, integration (real RabbitMQ + PostgreSQL) and end-to-end.
test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

clean:
	rm -rf $(VENV) var/*.sqlite3* var/mail var/logs

## Latency figures as ratios to a baseline measured in the same run (not a test).
bench: $(STAMP)
	$(BIN)/python -m deploy.bench
