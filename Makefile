# creatorpulse - `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# uv installs the exact versions of uv.lock; where uv cannot be had, pip installs from
# pyproject.toml's ranges instead (and says so).
UV_VERSION := 0.13.9
UV     := $(VENV)/bin/uv

.DEFAULT_GOAL := help
.PHONY: help install browser run test test-unit test-integration drills lock lint format bench kafka clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "creatorpulse needs Python 3.11+ (set PYTHON=python3.11)")'
	@echo "creatorpulse: creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@echo "creatorpulse: installing uv $(UV_VERSION) into $(VENV) with pip (first run: about a minute in all)"
	@if $(PY) -m pip install --progress-bar on --disable-pip-version-check "uv==$(UV_VERSION)"; then \
		echo "creatorpulse: installing the locked dependencies of uv.lock"; \
		UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact --extra dev --python $(PY); \
	else \
		echo "creatorpulse: uv is not available; installing with pip (versions not locked)"; \
		$(PY) -m pip install --disable-pip-version-check -e '.[dev]'; \
	fi
	@touch $@
	@echo "creatorpulse: installed; \`make run\` starts the demo"

install: $(STAMP) ## Create .venv with creatorpulse and the dev tools

# The dashboard's browser test drives Debian's chromium through its chromedriver; both
# come from apt (never a downloaded browser), installed here when missing.
browser: ## Install Debian's chromium and chromium-driver if missing (the dashboard test)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null; then \
		echo "creatorpulse: installing chromium chromium-driver with apt-get"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; \
	else echo "creatorpulse: no apt-get: install chromium and chromium-driver yourself" >&2; fi

run: $(STAMP) ## Run the whole pipeline on the embedded default with a live leaderboard
	$(VENV)/bin/creatorpulse run

test: $(STAMP) browser ## Run every test (real Apache Kafka is fetched with Maven and started)
	-$(PY) -m creatorpulse.brokers.apache fetch
	$(PY) -m pytest

test-unit: $(STAMP) ## Unit tests only (seconds, no I/O)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP) browser ## Integration and end-to-end tests (Kafka, chDB)
	-$(PY) -m creatorpulse.brokers.apache fetch
	$(PY) -m pytest tests/integration tests/e2e tests/harness

# The drills also run in `make test`, at scale 1 and without the soak.
DRILL_SCALE ?= 10
DRILL_SOAK_S ?= 600
drills: $(STAMP) ## Fault and poison drills at 10x scale plus a 10-min soak, one table (~25 min; not in CI)
	-$(PY) -m creatorpulse.brokers.apache fetch
	CREATORPULSE_DRILL_SCALE=$(DRILL_SCALE) CREATORPULSE_DRILL_SOAK_S=$(DRILL_SOAK_S) \
		$(PY) -m pytest tests/drills -m drills

lock: $(STAMP) ## Update uv.lock after a change of dependencies in pyproject.toml
	$(UV) lock

lint: $(STAMP) ## ruff (lint + format check), mypy, the import rules, and uv.lock current
	@if [ -x $(UV) ]; then $(UV) lock --check; fi
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache --no-logo

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP) ## Benchmark vs raw ceiling and textbook Faust on real Kafka (~22 min with the 10-min soak; BENCH_ARGS=--quick: ~4 min)
	-$(PY) -m creatorpulse.brokers.apache fetch
	$(PY) -m creatorpulse.bench $(BENCH_ARGS)

kafka: $(STAMP) ## Run a real Apache Kafka on 127.0.0.1 in the foreground
	$(PY) -m creatorpulse.brokers.apache run

clean: ## Remove .venv, caches and local state (.creatorpulse)
	rm -rf $(VENV) .creatorpulse .pytest_cache .mypy_cache .ruff_cache deploy/kafka/.cache *.egg-info
