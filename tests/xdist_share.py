"""Expensive test inputs built once per pytest run, also when pytest-xdist runs several workers.

A session-scoped fixture runs once *per worker* under xdist (``make test`` runs two). For the
few inputs that take minutes to build and are only read afterwards (the boot-chain test OS, its
committed versions), :func:`build_once` builds them into a directory shared by every worker of
the run, under an exclusive ``flock``: the first worker builds, the others wait for it and reuse
the result. A build that raised leaves no ``.done`` marker, so the next worker tries again (and
fails or skips the same way: no half-built tree is ever used).

:func:`file_lock` also guards caches that outlive a run (``~/.cache/bootree-test``), which two
workers, or two CI runs, may fill at the same time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that every worker of this pytest run sees (the session's own base without xdist).

    Each xdist worker's base temp is ``<run base>/popen-gwN``; their parent is the run's. Outside
    xdist the parent is shared with other, unrelated pytest runs, so the session's own base is used.
    """
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """``<run root>/shared/name``, built by ``build(dest)`` by the first worker that asks for it.

    The result must be treated as read-only by its users: other workers read it concurrently.
    """
    root = run_root(tmp_path_factory) / "shared"
    dest, done = root / name, root / f"{name}.done"
    with file_lock(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(dest, ignore_errors=True)  # what a failed earlier attempt left
            build(dest)
            done.write_text(f"built by {os.environ.get('PYTEST_XDIST_WORKER', 'master')}\n")
    return dest
