# The two commands a newcomer needs: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup map-assets browser-deps apidoc-deps run test lint stop clean chaos bench bench-full

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The map page's web-map library (MapLibre GL JS from the npm registry, pinned by web/package-lock.json),
# copied into the folder the service serves at /static/vendor/. Built here, never committed.
VENDOR := ws_server/static/vendor
MAPLIBRE_DIST := web/node_modules/maplibre-gl/dist
MAPLIBRE_FILES := maplibre-gl.mjs maplibre-gl-worker.mjs maplibre-gl.css

$(MAPLIBRE_DIST)/maplibre-gl.mjs: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENDOR)/.built: $(MAPLIBRE_DIST)/maplibre-gl.mjs
	mkdir -p $(VENDOR)
	cp $(addprefix $(MAPLIBRE_DIST)/,$(MAPLIBRE_FILES)) web/node_modules/maplibre-gl/LICENSE.txt $(VENDOR)/
	touch $@

map-assets: $(VENDOR)/.built

# Headless Chromium (Debian's package), a CJK font so Chinese labels render, and playwright-core for the
# map page's end-to-end test.
browser-deps: map-assets
	@if [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
		else echo "Chromium or the CJK font is missing: sudo apt-get install -y chromium fonts-noto-cjk"; exit 1; fi; \
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
run: setup map-assets
	$(BIN)/shfeeds run

## The test suite against a real Kafka + Redis that it starts itself; then the linters.
test: setup browser-deps apidoc-deps
	$(BIN)/shfeeds stack up
	SHFEEDS_FORBID_SKIPS=1 $(BIN)/python -m pytest -q -p no:cacheprovider --durations=25
	$(MAKE) lint

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## Chaos (not part of `make test`, ~10 min): abusive clients next to a bystander on a three-broker stack of
## its own (ports 29xxx, .stack/chaos), a broker, the worker, Redis and the server killed in turn; then Kafka
## and the clients are checked. Writes docs/chaos.md and docs/chaos-result.json; exits 1 if something broke.
chaos: setup
	$(BIN)/python -m bench.chaos --out docs/chaos-result.json --markdown docs/chaos.md

## The benchmark set that fits in 30 minutes (not part of `make test`; bench/suite.py): the policy kernel
## against a numpy port; our pipeline against Quix Streams and our fan-out against Centrifugo in the same run
## (equal load, then each side's capacity); the pipeline's fair baselines; the fan-out's capacity against its
## fair baseline; then the capacity model from the inputs. Each writes its result JSON (bench/results/, with
## the commit) and its generated doc sections, and prints its goals, met or missed; the suite checks its own
## duration. `make bench-full` adds the pipeline's rate ramp and the end-to-end latency (over an hour).
## The soak (`python -m bench.soak`, 15 min) and the chaos run (`make chaos`) are separate.
bench: setup
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/shfeeds stack up
	$(BIN)/python -m bench.suite

bench-full: setup
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/shfeeds stack up
	$(BIN)/python -m bench.suite --full

## Stop the local Kafka + Redis.
stop:
	$(BIN)/shfeeds stack down

clean: stop
	rm -rf .stack $(VENDOR)
