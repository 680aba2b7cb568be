# The two commands a newcomer needs: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint stop clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The whole service with simulated Shanghai feeds (starts Kafka + Redis first); Ctrl-C stops it.
run: setup
	$(BIN)/shfeeds run

## The test suite against a real Kafka + Redis that it starts itself; then the linters.
test: setup
	$(BIN)/shfeeds stack up
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(MAKE) lint

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## Stop the local Kafka + Redis.
stop:
	$(BIN)/shfeeds stack down

clean: stop
	rm -rf .stack
