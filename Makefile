# feedserver — `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The server's own dependencies (`make run`); the test tools on top of them (`make test`,
# `make bench`): a user who only runs the demo installs a third of it.
RUN_STAMP := $(VENV)/.installed-run-stamp
STAMP := $(VENV)/.installed-stamp
# Tests run in one process per core (pytest-xdist); each module stays on one worker, so its
# module-scoped servers start once. PYTEST_ARGS="-n 0" runs them in this process.
# A worker that dies (a signal, the OOM killer) ends the run at once, reported with the test
# it was running: replacing it makes --dist loadscope run that module again on each new
# worker, and a stress run of the suite hung for good after one such replacement.
PYTEST_ARGS ?= -n auto --dist loadscope --max-worker-restart=0
# The newest CPython >= 3.11 on this machine (PATH or pyenv); `make test` runs the unit and
# demo tests on it too. Empty, or the same version as $(PYTHON): that step is skipped.
NEWEST_PYTHON ?= $(shell bash scripts/newest-python.sh)
NEWEST_VENV ?= .venv-newest

# The tests start many Python processes (CLI commands, servers, ledger appenders), each
# importing feedserver: where the environment says PYTHONDONTWRITEBYTECODE (as on this
# project's machines), each compiled it from source again, ~0.35 s per process. The test and
# bench targets let Python keep its bytecode (__pycache__/, git-ignored).
test test-newest bench bench-busy: export PYTHONDONTWRITEBYTECODE =

.DEFAULT_GOAL := help
.PHONY: help install system-deps run serve test newest-venv test-newest lint typecheck schemas bench bench-busy lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# How both installs start: the venv (made again over an existing one: harmless), a current pip.
define new_venv
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
endef

$(RUN_STAMP): pyproject.toml constraints.txt
	$(new_venv)
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $(RUN_STAMP)

# One pip run for both sets (a second run resolves and builds the editable install again);
# on a venv `make run` made, it adds the test tools on top.
$(STAMP): pyproject.toml constraints.txt
	$(new_venv)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(RUN_STAMP) $(STAMP)

install: $(STAMP) ## Create the venv and install feedserver with its test tools

system-deps: ## Install PostgreSQL, Chromium and curl from Debian when missing (tests and benches need them)
	bash scripts/system-deps.sh

run: $(RUN_STAMP) ## Demo: generate a small dump, build its snapshot, create a demo key, serve on :8080
	$(VENV)/bin/feedserver demo

# The newest Python's venv is installed in the background while the suite runs on $(PYTHON):
# the suite leaves about a third of two cores idle (waiting on servers and brokers), and the
# install took a minute on its own. Its output is shown only if it fails.
test: install system-deps ## Lint, type-check, every test on python3; unit + demo tests on the newest Python
	$(VENV)/bin/ruff check feedserver tests bench
	$(VENV)/bin/mypy
	@$(MAKE) --no-print-directory newest-venv > $(VENV)/newest-venv.log 2>&1 & installing=$$!; \
	echo "$(PY) -m pytest -q $(PYTEST_ARGS)"; \
	$(PY) -m pytest -q $(PYTEST_ARGS); tests=$$?; \
	wait $$installing || { cat $(VENV)/newest-venv.log; echo "newest-venv failed"; exit 1; }; \
	exit $$tests
	$(MAKE) --no-print-directory test-newest

# "yes" when $(NEWEST_PYTHON) is another (newer) version than $(PYTHON)
NEWER = $(shell [ -n "$(NEWEST_PYTHON)" ] && [ "$$($(NEWEST_PYTHON) -c 'import sys; print(sys.version_info[:2])')" != "$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')" ] && echo yes)

newest-venv:
	@if [ "$(NEWER)" = yes ]; then $(MAKE) --no-print-directory install PYTHON=$(NEWEST_PYTHON) VENV=$(NEWEST_VENV); fi

test-newest: ## The unit tests and the demo test on the newest Python this machine has
	@if [ "$(NEWER)" != yes ]; then \
		echo "test-newest: no Python newer than $(PYTHON) on this machine; skipped"; \
	else \
		$(MAKE) --no-print-directory install PYTHON=$(NEWEST_PYTHON) VENV=$(NEWEST_VENV) && \
		$(NEWEST_VENV)/bin/python --version && \
		$(NEWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests/unit tests/e2e/test_demo.py; \
	fi

lint: install ## ruff
	$(VENV)/bin/ruff check feedserver tests bench

typecheck: install ## mypy --strict
	$(VENV)/bin/mypy

schemas: install ## Regenerate schemas/ (JSON Schema of the records, OpenAPI of the API)
	$(PY) -m feedserver.schemas

bench: install system-deps ## Benchmarks: ratios against baselines measured in the same run
	$(PY) -m bench

bench-busy: install system-deps ## The benchmarks again while another process keeps one core busy
	$(PY) -m bench --busy

lock: install ## Rewrite constraints.txt from the venv (after changing dependencies)
	{ echo '# Versions `make install` installs (pip -c): what CI tested. `make lock` rewrites it from the venv.'; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^feedserver'; } > constraints.txt

clean: ## Remove the venvs and local data
	rm -rf $(VENV) $(NEWEST_VENV) var .pytest_cache .mypy_cache .ruff_cache
