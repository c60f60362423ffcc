"""Fixtures of the delta tests: a source repository with two related commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from delta_builders import Pair, make_pair


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    """An archive repository with v1 and v2."""
    return make_pair(tmp_path)
