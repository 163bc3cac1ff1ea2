# Two commands do everything: `make run` and `make test`. The rest are conveniences.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test unit integration infra e2e check lint typecheck bench bench-payments bench-guests bench-messaging bench-flow bench-local bench-fairness load chaos fuzz build clean

# What the tests take from the machine, found on the PATH: Chromium and its ChromeDriver (the
# dashboard tests) and redis-server (the Redis-backed tests; `.[dev]` brings one into the venv on
# x86_64 Linux). What is missing comes from Debian's packages (chromium, chromium-driver,
# redis-server) when apt-get may run without a password: as root, or with passwordless sudo. It
# never prompts and never stops the run: with no way to install, those tests report as SKIPPED.
BROWSERS := chromium chromium-browser google-chrome
.PHONY: tools
tools: $(STAMP)
	@missing=""; browser=""; \
	for name in $(BROWSERS); do command -v $$name >/dev/null 2>&1 && browser=$$name; done; \
	[ -n "$$browser" ] || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v redis-server >/dev/null 2>&1 || [ -x $(BIN)/redis-server ] || missing="$$missing redis-server"; \
	[ -n "$$missing" ] || exit 0; \
	apt=""; \
	if ! command -v apt-get >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt="env DEBIAN_FRONTEND=noninteractive apt-get"; \
	elif sudo -n true 2>/dev/null; then apt="sudo -n env DEBIAN_FRONTEND=noninteractive apt-get"; fi; \
	if [ -z "$$apt" ]; then \
		echo "Not installing$$missing: that takes apt-get, as root or with passwordless sudo. Install it to run the tests that need it; they are skipped."; \
		exit 0; \
	fi; \
	echo "Installing$$missing (Debian packages)"; \
	{ $$apt update -qq && $$apt install -y -qq$$missing; } \
		|| echo "Could not install$$missing. The tests that need it will be skipped."

$(STAMP): pyproject.toml layers/tarefa/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# `make run API_PORT=3100 AWS_PORT=4699` when the defaults are taken.
API_PORT ?= 3000
AWS_PORT ?= 4599
# RUN_ARGS: more `tarefa local` flags, e.g. make run RUN_ARGS="--delay-speedup 60"
RUN_ARGS ?=
run: $(STAMP)
	$(BIN)/tarefa local --api-port $(API_PORT) --aws-port $(AWS_PORT) $(RUN_ARGS)

# pytest-xdist: one process per core (TEST_WORKERS=0 runs them in this one), each file on one worker
# so a module's fixtures (a stack of its own, the chaos run) are built once.
TEST_WORKERS ?= auto
test: $(STAMP) tools
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP) tools
	$(BIN)/python -m pytest tests/integration

infra: $(STAMP)
	$(BIN)/python -m pytest tests/infrastructure

e2e: $(STAMP) tools
	$(BIN)/python -m pytest tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/tarefa/tarefa layers/workloads src/tarefa functions tests bench examples

check: lint typecheck

# Reports cost per million jobs, cold starts, handler overhead and local-stack throughput
# (bench/results.json); never fails on a slow machine.
bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/payments_bench.py $(PAYMENTS_BENCH_ARGS)
	$(BIN)/python bench/guests_bench.py
	$(BIN)/python bench/messaging_bench.py $(MESSAGING_BENCH_ARGS)
	$(BIN)/python bench/flow_bench.py

# The messaging workload (bench/messaging_bench.py): $ and AWS requests per message sent (to READ,
# its three status callbacks applied) and per webhook delivered, on moto; and messages a second
# on `tarefa local` with its WhatsApp sandbox: "messaging" in bench/results.json. Reports; never
# fails. MESSAGING_BENCH_ARGS="--parts message,webhook" skips the local stack.
bench-messaging: $(STAMP)
	$(BIN)/python bench/messaging_bench.py $(MESSAGING_BENCH_ARGS)

# The guests workload's cost (bench/guests_bench.py): AWS requests and $ per 1,000 registrations
# and logins on moto, bcrypt at its real cost: "guests" -> "cost" in bench/results.json.
bench-guests: $(STAMP)
	$(BIN)/python bench/guests_bench.py

# Seed 004's load tests with Locust (installed here on first use: pip install -e '.[load]')
# against a fresh `tarefa local`: 100, 300 and 500 guests at once doing phone check -> register
# or log in -> poll until the pass; "guests" -> "load" in bench/results.json. Each simulated
# guest has a loopback address of its own (the per-address limit is not raised). Reports; never
# fails. LOAD_TESTS=100 runs one; STACK_ARGS="--api-concurrency 8" passes flags to the stack.
LOAD_TESTS ?= 100,300,500
STACK_ARGS ?=
LOAD_STAMP := $(VENV)/.load-installed
$(LOAD_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[load]'
	@touch $(LOAD_STAMP)
load: $(LOAD_STAMP)
	$(BIN)/python bench/guests_load.py --tests $(LOAD_TESTS) --stack-args "$(STACK_ARGS)"

# Enqueue bursts over HTTP against `tarefa local` (200 jobs with 1, 4 and 16 clients, then 500
# guests at once); merged into bench/results.json as "local_api" -> "after". Never fails.
bench-local: $(STAMP)
	$(BIN)/python bench/local_burst.py

# What one tenant's burst (2,000 jobs) does to another's 10 without fair queues, on moto:
# "fairness" in bench/results.json (README "Flow control"). Never fails.
bench-fairness: $(STAMP)
	$(BIN)/python bench/fairness.py

# What each flow-control option adds per job when on (concurrency, unique_key, debounce, the
# fair-queue group), a user schedule's firing and a bulk operation per job acted on, on moto:
# on minus off, "flow" in bench/results.json (README "Flow control"). Never fails.
bench-flow: $(STAMP)
	$(BIN)/python bench/flow_bench.py

# The payments workload alone (bench/payments_bench.py): AWS requests, DynamoDB units, Lambda GB-s
# and $ per million payments (card APRO; PIX paid on the 1st and 3rd poll), and the card payments
# `tarefa local` approves a minute against its sandbox: "payments" in bench/results.json. Reports;
# never fails. PAYMENTS_BENCH_ARGS="--parts card,pix" skips the local stack.
PAYMENTS_BENCH_ARGS ?=
bench-payments: $(STAMP)
	$(BIN)/python bench/payments_bench.py $(PAYMENTS_BENCH_ARGS)

# The long chaos run: 10,000 jobs (CHAOS_JOBS=...) through the real API and handlers on moto with
# AWS faults, duplicate deliveries and abandoned invocations, at most 25 minutes; figures merged
# into bench/results.json as "chaos". The short form runs in `make test`
# (tests/integration/test_chaos.py). Exits 1 when anything accepted was lost or got wrong.
CHAOS_JOBS ?= 10000
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --jobs $(CHAOS_JOBS)

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
