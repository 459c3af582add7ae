# usage-moments: two commands do all the set-up on a fresh machine.
#   make run   - local broker (when MOMENTS_KAFKA_BOOTSTRAP is unset) + worker + simulator + tail
#   make test  - venv, lint, every test tier against a real local broker
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA := scripts/kafka-local
export KAFKA_PORT ?= 9092

.PHONY: help install lint format test test-unit test-integration run bench broker-start broker-stop clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

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

test-unit: $(STAMP) ## unit, functional and ops (deployment files) tiers (no broker)
	$(BIN)/pytest tests/unit tests/functional tests/ops -q

test: $(STAMP) ## lint + every test tier against a real local broker (started and stopped here)
	$(MAKE) lint
	$(KAFKA) start
	trap '$(KAFKA) stop' EXIT; \
	  MOMENTS_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA_PORT) $(BIN)/pytest -q

test-integration: $(STAMP) ## integration tier only (broker started and stopped here)
	$(KAFKA) start
	trap '$(KAFKA) stop' EXIT; \
	  MOMENTS_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA_PORT) $(BIN)/pytest tests/integration -q

run: $(STAMP) ## worker + simulator + tail; starts a local broker when MOMENTS_KAFKA_BOOTSTRAP is unset
	scripts/run-local

bench: $(STAMP) ## engine figures against their targets: throughput, two workers, latency, RSS, rebuild, plans (prints)
	$(KAFKA) start
	trap '$(KAFKA) stop' EXIT; \
	  MOMENTS_KAFKA_BOOTSTRAP=127.0.0.1:$(KAFKA_PORT) $(BIN)/python scripts/bench.py

broker-start: ## start the local Kafka broker
	$(KAFKA) start

broker-stop: ## stop the local Kafka broker
	$(KAFKA) stop

clean: ## remove the venv, caches and local state
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache moments-data
