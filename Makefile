# bootree developer entry points. `make demo` and `make test` work from a clean clone: each
# bootstraps the virtual environment in .venv first.
#
#   make venv    create .venv with python3 (>= 3.11) and `pip install -e '.[test]'`
#                (re-run only when pyproject.toml changes: see $(STAMP))
#   make test    run the test suite on $(PYTEST_JOBS) xdist workers (default 2; PYTEST_JOBS=0 runs
#                serially): .venv/bin/python -m pytest -n 2 --dist loadgroup tests $(PYTEST_ARGS)
#   make demo    run scripts/demo.sh with .venv/bin on PATH (DEMO_DIR=... to move its work dir)
#   make lint    ruff, mypy (strict) and import-linter; the same checks run inside `make test`
#   make clean   remove the venv, caches and the demo's default work dir (./demo-work)

PYTHON ?= python3
VENV := .venv
VENV_BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
PYTEST_JOBS ?= 2
DEMO_DIR ?= demo-work

.PHONY: all venv test demo lint clean

all: test

venv: $(STAMP)

# The stamp depends on pyproject.toml only: the install is editable, so source changes need no
# reinstall, and a new dependency (or console script) in pyproject.toml triggers one.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (need Python >= 3.11)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: $(PYTHON) is $$($(PYTHON) -V 2>&1); bootree needs Python >= 3.11 (make PYTHON=python3.X)" >&2; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || \
		{ rm -rf $(VENV); echo "error: '$(PYTHON) -m venv' failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $@

# pytest exits 5 when it collected no test at all; say so loudly but do not fail the build on it
# (.ci/run relies on this; a real failure keeps its exit code).
# The tests start bootree thousands of times (libostree's suite most of them). Byte-compile it
# first: with PYTHONDONTWRITEBYTECODE set (as in this machine's environment) no run writes
# its .pyc files, and each start would compile every module it imports again (~0.1-0.2 s each).
# Two xdist workers use both cores; `--dist loadgroup` keeps an `xdist_group` on one worker
# in collection order (--no-loadscope-reorder: tests/conftest.py puts the `heavy` tests first,
# xdist would put the largest groups first). PYTEST_ARGS come last: `-n 0` wins.
test: $(STAMP)
	@$(VENV)/bin/python -m compileall -q src >/dev/null
	@PATH="$(VENV_BIN):$$PATH" $(VENV)/bin/python -m pytest -n $(PYTEST_JOBS) --dist loadgroup --no-loadscope-reorder tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "warning: pytest collected no tests" >&2; exit 0; fi; exit $$rc

demo: $(STAMP)
	PATH="$(VENV_BIN):$$PATH" DEMO_DIR="$(DEMO_DIR)" bash scripts/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) demo-work build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache \
		.import_linter_cache .hypothesis
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
