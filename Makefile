# bootree developer entry points. `make demo` and `make test` work from a clean clone: each
# bootstraps the virtual environment in .venv first.
#
#   make venv    create .venv with python3 (>= 3.11) and `pip install -e '.[test]'`
#                (re-run only when pyproject.toml changes: see $(STAMP))
#   make test    run the test suite: .venv/bin/python -m pytest tests $(PYTEST_ARGS)
#   make demo    run scripts/demo.sh with .venv/bin on PATH (DEMO_DIR=... to move its work dir)
#   make lint    ruff, mypy (strict) and import-linter; the same checks run inside `make test`
#   make clean   remove the venv, caches and the demo's default work dir (./demo-work)

PYTHON ?= python3
VENV := .venv
VENV_BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
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
test: $(STAMP)
	@PATH="$(VENV_BIN):$$PATH" $(VENV)/bin/python -m pytest tests $(PYTEST_ARGS); rc=$$?; \
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
