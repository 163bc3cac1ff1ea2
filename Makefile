# Two commands do everything: `make run` and `make test`. The rest are conveniences.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test unit integration infra e2e check lint typecheck bench fuzz build clean

# The dashboard's end-to-end test drives Debian's Chromium through its ChromeDriver.
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMEDRIVER):
	@command -v apt-get >/dev/null || { echo "Install Chromium and ChromeDriver (Debian packages chromium, chromium-driver)"; exit 1; }
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver

$(STAMP): pyproject.toml layers/tarefa/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/tarefa local

test: $(STAMP) $(CHROMEDRIVER)
	$(BIN)/python -m pytest tests

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

infra: $(STAMP)
	$(BIN)/python -m pytest tests/infrastructure

e2e: $(STAMP) $(CHROMEDRIVER)
	$(BIN)/python -m pytest tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/tarefa/tarefa src/tarefa functions tests bench

check: lint typecheck

# Reports cost per million jobs, cold starts, handler overhead and local-stack throughput
# (bench/results.json); never fails on a slow machine.
bench: $(STAMP)
	$(BIN)/python bench/run.py

# Schemathesis against the API's own /openapi.json, in process on moto: 60 generated requests per
# operation and mode (FUZZ_EXAMPLES=...), merged into bench/results.json as "fuzz". The short form
# runs in `make test` (tests/integration/test_fuzz.py). Exits 1 when it finds anything.
FUZZ_EXAMPLES ?= 60
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py $(FUZZ_EXAMPLES)

# `sam build` needs the AWS SAM CLI (pip install aws-sam-cli) and, on this machine,
# PYENV_VERSION=3.11.7:3.12.1:3.13.0 so that python3.13 (the Lambda runtime) is on the PATH.
build:
	sam validate --lint && sam build

clean:
	rm -rf $(VENV) .aws-sam .tarefa .mypy_cache .ruff_cache .pytest_cache
