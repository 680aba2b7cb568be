# The two commands a newcomer needs: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser-deps apidoc-deps run test lint stop clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Headless Chromium (Debian's package) and playwright-core for the map page's end-to-end test.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "Chromium is missing: sudo apt-get install -y chromium"; exit 1; fi; \
	fi
	@if [ ! -d tests/browser/node_modules/playwright-core ]; then \
		cd tests/browser && npm ci --no-audit --no-fund --loglevel=error; \
	fi

# The official validators of the API documents (docs/asyncapi.yaml), run by tests/test_api_documents.py.
apidoc-deps:
	@if [ ! -d tests/apidocs/node_modules/@asyncapi/parser ]; then \
		cd tests/apidocs && SCARF_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error; \
	fi

## The whole service with simulated Shanghai feeds (starts Kafka + Redis first); Ctrl-C stops it.
run: setup
	$(BIN)/shfeeds run

## The test suite against a real Kafka + Redis that it starts itself; then the linters.
test: setup browser-deps apidoc-deps
	$(BIN)/shfeeds stack up
	SHFEEDS_FORBID_SKIPS=1 $(BIN)/python -m pytest -q -p no:cacheprovider
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
