"""Fixtures of the integration tests."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultkit import fast_dir  # type: ignore[import-not-found]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A scratch directory on tmpfs when available (see :func:`faultkit.fast_dir`), removed after."""
    d = fast_dir(tmp_path)
    yield d
    if d != tmp_path:
        shutil.rmtree(d, ignore_errors=True)
