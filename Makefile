# feedserver — `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install system-deps run serve test lint typecheck schemas bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## Create the venv and install feedserver with its test tools

system-deps: ## Install PostgreSQL and Chromium from Debian when missing (tests need them)
	bash scripts/system-deps.sh

run: install ## Demo: generate a small dump, build its snapshot, create a demo key, serve on :8080
	$(VENV)/bin/feedserver demo

test: install system-deps ## Lint, type-check and run every test (unit + integration)
	$(VENV)/bin/ruff check feedserver tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install ## ruff
	$(VENV)/bin/ruff check feedserver tests bench

typecheck: install ## mypy --strict
	$(VENV)/bin/mypy

schemas: install ## Regenerate schemas/ (JSON Schema of the records, OpenAPI of the API)
	$(PY) -m feedserver.schemas

bench: install ## Benchmarks: ratios against baselines measured in the same run
	$(PY) -m bench

clean: ## Remove the venv and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
