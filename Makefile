# The task runner: `make` (or `make help`) lists the targets. Every target runs the
# entry point named in its recipe, which also works without make (docs/development.md).

PYTHON := $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
# The generators, in order: one list, in stacktools/generate/__init__.py (read only when used).
GENERATORS = $(shell $(PYTHON) -m stacktools.generate)
SCENARIO ?= smoke
EXPERIMENT ?=

.DEFAULT_GOAL := help
.PHONY: help up down test generate check load chaos bench

help: ## list the targets (the default)
	@echo "Usage: make TARGET [VAR=value]"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: ## set up (.env, secrets) and start the stack: scripts/setup.sh && docker compose up -d
	scripts/setup.sh && docker compose up -d

down: ## stop the stack: docker compose down
	docker compose down

test: ## lint, type-check and test: scripts/test.sh
	scripts/test.sh

generate: ## regenerate every generated file, in order (stacktools/generate/__init__.py)
	@set -e; for g in $(GENERATORS); do \
		echo "$(PYTHON) -m stacktools.generate.$$g"; $(PYTHON) -m stacktools.generate.$$g; done

check: ## every generator's --check, then scripts/check-stack
	@set -e; for g in $(GENERATORS); do \
		echo "$(PYTHON) -m stacktools.generate.$$g --check"; $(PYTHON) -m stacktools.generate.$$g --check; done
	scripts/check-stack

load: ## k6 load test against the running agent: k6/run-load-tests.sh SCENARIO (default smoke)
	k6/run-load-tests.sh $(SCENARIO)

chaos: ## chaos experiment: chaos/run-chaos-test.sh EXPERIMENT (required; --list names them)
	@test -n "$(EXPERIMENT)" || { echo "make chaos EXPERIMENT=name (chaos/run-chaos-test.sh --list)" >&2; exit 2; }
	chaos/run-chaos-test.sh $(EXPERIMENT)

bench: ## ingest-engine benchmark: scripts/bench-agent.sh
	scripts/bench-agent.sh
