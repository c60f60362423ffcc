"""Linters as tests: ruff, mypy (strict) and import-linter run as part of ``make test``.

Each test skips when its tool is not installed, except in CI (``CI`` set), where a missing tool
is a failure: CI must run every check. Tools are looked up next to the running interpreter
first (the venv that ``make`` builds), then on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _find_tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return os.fspath(beside)
    return shutil.which(name)


def _run_tool(name: str, *args: str) -> None:
    exe = _find_tool(name)
    if exe is None:
        if _in_ci():
            pytest.fail(f"{name} is not installed, and CI must run it (pip install -e '.[test]')")
        pytest.skip(f"{name} is not installed")
    proc = subprocess.run(
        [exe, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join([name, *args])} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )


def test_ruff() -> None:
    _run_tool("ruff", "check", "--no-cache", "src", "tests")


def test_mypy() -> None:
    # The configuration ([tool.mypy] in pyproject.toml) selects the files and strict mode.
    _run_tool("mypy")


def test_import_linter() -> None:
    # Contracts are in [tool.importlinter] in pyproject.toml; see docs/architecture.md.
    _run_tool("lint-imports", "--no-cache")
