# Two commands do all set-up on a fresh machine (Python 3.11, pip, make):
#   make run   - create .venv, install, seed the demo data, serve the dashboard on 127.0.0.1:8501
#   make test  - same bootstrap, then ruff check, ruff format --check, mypy and pytest
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8501
export LITELLM_LOCAL_MODEL_COST_MAP := True
export MLFLOW_ENABLE_TELEMETRY := false
export DO_NOT_TRACK := true

.PHONY: install run test lint fmt clean seed reliability

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

seed: install
	$(BIN)/alignboard seed-demo

run: seed
	$(BIN)/streamlit run app/main.py --server.address $(HOST) --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The browser tests (tests/browser, part of `make test`) drive Debian's chromium; install
# it when missing (sudo only when not already root).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: chromium
chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

test: install chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .alignboard test-artifacts .pytest_cache .ruff_cache .mypy_cache

# Benchmarks (B0 start-up, B1 GEPA speed, B2 MemAlign, B3 labeling latency at 1k/10k traces), quick mode:
# tables on stdout, JSON in benchmarks/results/ (gitignored; benchmarks/README.md keeps the figures).
.PHONY: bench
bench: install
	$(BIN)/python benchmarks/run_all.py --quick --out benchmarks/results/latest.json

# Reliability tests (issue 5: bad input, secrets, ...). They are part of `make test` too;
# this target runs just them.
reliability: install
	$(BIN)/python -m pytest -q tests/reliability
