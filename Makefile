# usage-moments: two commands do all the set-up on a fresh machine.
#   make run   - local broker (when MOMENTS_KAFKA_BOOTSTRAP is unset) + worker + simulator + tail
#   make test  - venv, lint, every test tier against a real local broker (Kafka 3.9.1),
#                then the Kafka 4.x subset against a second broker (Kafka $(KAFKA4_VERSION))
#   make chaos - the chaos tier: three workers on a three-broker cluster under faults,
#                on Kafka 3.9.1 then on Kafka $(KAFKA4_VERSION) (CI runs it after make test)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA := scripts/kafka-local
# The test tiers and the benchmark run their broker on a state dir of their own, deleted
# before each start: topics left by earlier runs piled up (19,822 partition dirs) until
# the broker ran out of file descriptors. `make run` keeps its broker's state.
KAFKA_TEST_DIR ?= /tmp/usage-moments-kafka-test
KAFKA_BENCH_DIR ?= /tmp/usage-moments-kafka-bench
KAFKA_T := KAFKA_LOCAL_DIR=$(KAFKA_TEST_DIR) $(KAFKA)
KAFKA_B := KAFKA_LOCAL_DIR=$(KAFKA_BENCH_DIR) $(KAFKA)
export KAFKA_PORT ?= 9092
# The second broker of `make test`: the newest Kafka 4.x release Maven Central serves
# (at this writing), on its own ports and state dir beside the 3.9.1 one.
KAFKA4_VERSION ?= 4.4.0
KAFKA4_PORT ?= 9094
KAFKA4_CONTROLLER_PORT ?= 9095
KAFKA4_DIR ?= /tmp/usage-moments-kafka4
KAFKA4 := KAFKA_VERSION=$(KAFKA4_VERSION) KAFKA_PORT=$(KAFKA4_PORT) \
	KAFKA_CONTROLLER_PORT=$(KAFKA4_CONTROLLER_PORT) KAFKA_LOCAL_DIR=$(KAFKA4_DIR) $(KAFKA)
# What `make test` also runs on Kafka 4.x: every event kind end to end, the crash and
# the fleet fault tests (the broker-away one runs its own 4.x broker: KAFKA_VERSION),
# and the chaos tier's reader of __consumer_offsets (4.x writes another value version).
KAFKA4_TESTS ?= tests/integration/test_thresholds.py tests/integration/test_milestones.py \
	tests/integration/test_anniversaries.py tests/integration/test_overage_and_recovery.py \
	tests/integration/test_account_changes.py tests/integration/test_timers.py \
	tests/integration/test_custom_moments.py tests/faults/test_crash.py \
	tests/faults/test_fleet_faults.py tests/integration/test_offsets_log.py
# The chaos tier's clusters: nodes on CHAOS_PORT, +2, +4 (controllers on the odd ports).
CHAOS_PORT ?= 9192
CHAOS_DURATION_S ?= 240

.PHONY: help install lint format test test-unit test-functional test-ops test-integration test-faults \
	test-kafka4 chaos run bench broker-start broker-stop clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	scripts/ensure-promtool >/dev/null
	scripts/ensure-openssl >/dev/null
	scripts/ensure-prometheus >/dev/null
	scripts/ensure-deploy-tools >/dev/null
	touch $(STAMP)

install: $(STAMP) ## create .venv, install the project with its dev dependencies, promtool, prometheus and kubeconform

lint: $(STAMP) ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The tiers, each alone (`make test` runs all but chaos in one pytest run, one broker).
test-unit: $(STAMP) ## unit tier: pure tests (no broker, no subprocess, no shipped file checked)
	$(BIN)/pytest tests/unit -q

test-functional: $(STAMP) ## functional tier: steps and stores on real RocksDB, no broker
	$(BIN)/pytest tests/functional -q

test-ops: $(STAMP) ## ops tier: hadolint, promtool, kubeconform, schemas, docs, the CLI as a process
	$(BIN)/pytest tests/ops -q

test: $(STAMP) ## lint + every test tier on Kafka 3.9.1, then the 4.x subset (brokers started and stopped here)
	$(MAKE) lint
	$(KAFKA_T) reset
	$(KAFKA_T) start
	trap '$(KAFKA_T) stop' EXIT; \
	  KAFKA_LOCAL_DIR=$(KAFKA_TEST_DIR) MOMENTS_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA_PORT) $(BIN)/pytest -q
	$(MAKE) test-kafka4

test-kafka4: $(STAMP) ## end-to-end, crash and fleet fault tests on Kafka 4.x, KAFKA4_VERSION (broker started and stopped here)
	$(KAFKA4) reset
	$(KAFKA4) start
	trap '$(KAFKA4) stop' EXIT; \
	  KAFKA_LOCAL_DIR=$(KAFKA4_DIR) KAFKA_VERSION=$(KAFKA4_VERSION) MOMENTS_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA4_PORT) \
	  $(BIN)/pytest -q $(KAFKA4_TESTS)

chaos: $(STAMP) ## chaos tier (minutes): 3 workers, 3 brokers, faults; on Kafka 3.9.1, then 4.x (KAFKA4_VERSION)
	KAFKA_VERSION=3.9.1 CHAOS_KAFKA_PORT=$(CHAOS_PORT) CHAOS_DURATION_S=$(CHAOS_DURATION_S) \
	  $(BIN)/pytest -q -rP -m chaos tests/chaos
	KAFKA_VERSION=$(KAFKA4_VERSION) CHAOS_KAFKA_PORT=$(CHAOS_PORT) CHAOS_DURATION_S=$(CHAOS_DURATION_S) \
	  $(BIN)/pytest -q -rP -m chaos tests/chaos

test-integration: $(STAMP) ## integration tier: real broker and workers, no fault (broker started and stopped here)
	$(KAFKA_T) reset
	$(KAFKA_T) start
	trap '$(KAFKA_T) stop' EXIT; \
	  KAFKA_LOCAL_DIR=$(KAFKA_TEST_DIR) MOMENTS_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA_PORT) $(BIN)/pytest tests/integration -q

test-faults: $(STAMP) ## fault tier: workers killed, stopped, fenced, starved (broker started and stopped here)
	$(KAFKA_T) reset
	$(KAFKA_T) start
	trap '$(KAFKA_T) stop' EXIT; \
	  KAFKA_LOCAL_DIR=$(KAFKA_TEST_DIR) MOMENTS_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA_PORT) $(BIN)/pytest tests/faults -q

run: $(STAMP) ## worker + simulator + tail + webhook deliverer and receiver; starts a local broker when MOMENTS_KAFKA_BOOTSTRAP is unset
	scripts/run-local

bench: $(STAMP) ## issue 20 figures, each also relative to the baseline loop: throughput, scaling, latency, RSS, rebuild, plans (prints)
	$(KAFKA_B) reset
	$(KAFKA_B) start
	trap '$(KAFKA_B) stop' EXIT; \
	  KAFKA_LOCAL_DIR=$(KAFKA_BENCH_DIR) MOMENTS_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA_PORT) $(BIN)/python scripts/bench.py

broker-start: ## start the local Kafka broker
	$(KAFKA) start

broker-stop: ## stop the local Kafka broker
	$(KAFKA) stop

clean: ## remove the venv, caches and local state
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache moments-data
