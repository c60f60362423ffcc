"""Fixtures for sysroot tests: a fresh sysroot with a stateroot and commits of the sample OS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sysrootenv import SysrootEnv, commit_tree  # type: ignore[import-not-found]  # noqa: F401

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a bare repo and deployments need root (real ownership)")


@pytest.fixture(autouse=True)
def _mutable_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    """As ostree's own tests: no chattr +i, so pytest can delete tmp_path."""
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[SysrootEnv]:
    if os.geteuid() != 0:
        pytest.skip("a bare repo and deployments need root (real ownership)")
    yield SysrootEnv(tmp_path)
