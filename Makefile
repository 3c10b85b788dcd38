# parkdesk — `make run` brings the suite up, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
INFRA := deploy/local/infra.sh

.PHONY: help run test infra infra-down infra-status check lint typecheck unit integration fmt lock clean \
	routing-eval routing-learning release-schemas bench deploy-tools deploy-check browser chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@echo "[venv] installing the locked dependencies into $(VENV)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	@$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes requirements.lock
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

infra: venv ## install (first run) and start local Kafka and FerretDB, create the topics
	@$(INFRA) up
	@$(BIN)/parkdesk-admin provision-topics

infra-down: ## stop local Kafka and FerretDB
	@$(INFRA) down

infra-status:
	@$(INFRA) status

run: infra ## start the four services; Ctrl-C stops them
	@$(BIN)/python deploy/local/run.py

test: infra deploy-tools browser check ## lint, type-check and run every test against real Kafka and FerretDB
	@$(BIN)/pytest

# Debian's chromium for the SLA board's browser test, and a font with Chinese glyphs for its page.
BROWSER_PACKAGES := chromium fonts-wqy-zenhei

browser: ## install Debian's chromium and a CJK font for the board's browser test (root or sudo)
	@missing=$$(for package in $(BROWSER_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'install ok installed' \
			|| echo $$package; done); \
	if [ -n "$$missing" ]; then \
		run=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "[browser] installing" $$missing "from Debian..."; \
		$$run apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || { \
			$$run apt-get update -q >/dev/null && \
			$$run apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	fi

deploy-tools: ## build the validators of deploy/ (kustomize, kubeconform, promtool, compose-config)
	@deploy/tools/install.sh >/dev/null

deploy-check: venv deploy-tools ## only the checks of deploy/: image, compose, Kubernetes, monitoring
	@$(BIN)/pytest tests/deploy

unit: venv ## only the tests that need no infrastructure
	@$(BIN)/pytest tests/unit

integration: infra
	@$(BIN)/pytest tests/integration

chaos: infra ## thousands of tickets through SIGKILLs, broker loss and a store outage; prints the counts
	@$(BIN)/python -m tests.chaos

bench: infra ## benchmarks: print the figures and write them to bench/results/ (about 7 minutes)
	@$(BIN)/python -m bench.routing
	@$(BIN)/python -m bench.routing_learning
	@$(BIN)/python -m bench.sla
	@$(BIN)/python -m bench.notify
	@$(BIN)/python -m bench.e2e

release-schemas: venv ## record the event schemas of a release: later changes must stay readable across an upgrade
	@$(BIN)/python -m shared.compatibility release

routing-learning: infra ## routing's learning curve: corrections fed as transfers through the running suite
	@$(BIN)/python -m bench.routing_learning

routing-eval: venv ## routing accuracy, triage and wrong-department rates, confusions: labelled and blind sets
	@$(BIN)/parkdesk-routing-eval

check: lint typecheck

lint: venv
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: venv
	@$(BIN)/mypy

fmt: venv
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

lock: venv ## re-resolve requirements.lock (development) and requirements-runtime.lock (images)
	@$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock
	@# The images install only what the services run, at the versions the tests ran.
	@$(BIN)/uv pip compile -q pyproject.toml --python-version 3.11 --generate-hashes \
		--constraint requirements.lock -o requirements-runtime.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
