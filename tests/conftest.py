"""Fixtures shared by every test tier.

Tools the tests drive (the real ``ostree``) are found on PATH; a test that needs one skips
with the reason when it is missing, except under CI (``CI`` set), where a missing tool is a
failure: CI must run every tier.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bootree.repo import Repo, RepoMode


def require_tool(name: str) -> str:
    """Path of a program the test needs; skip (or fail under CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but not installed")
        pytest.skip(f"{name} is not installed")
    return path


def require_root() -> None:
    """Skip unless running as root (real ownership, bare repositories, namespaces)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (real file ownership)")


@pytest.fixture
def ostree() -> str:
    """The real ostree binary."""
    return require_tool("ostree")


@pytest.fixture(params=[m for m in RepoMode], ids=lambda m: m.value)
def any_mode(request: pytest.FixtureRequest) -> RepoMode:
    """Each repository mode in turn (bare only as root)."""
    mode: RepoMode = request.param
    if mode is RepoMode.BARE and os.geteuid() != 0:
        pytest.skip("bare repositories need root")
    return mode


@pytest.fixture
def repo(tmp_path: Path, any_mode: RepoMode) -> Repo:
    """A fresh repository in each mode."""
    return Repo.init(tmp_path / "repo", mode=any_mode)


@pytest.fixture
def archive_repo(tmp_path: Path) -> Repo:
    """A fresh archive repository."""
    return Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
