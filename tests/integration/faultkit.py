"""Shared pieces of the fault-injection harness (issue 10, "what it must show" item 2).

:func:`sweep` runs an operation once with a counting plan to learn its injection points, then
once per point and errno with the plan failing there, and calls ``check`` after each run. The
seam is :mod:`bootree._fs.faults`: every write, fsync and rename of the writers goes through it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bootree._fs import faults
from bootree.errors import BootreeError
from bootree.format.objects import ObjectType
from bootree.repo import Repo

ERRNOS = (errno.ENOSPC, errno.EIO)


@dataclass
class SweepResult:
    """What a sweep saw: points per kind, runs, failures that fired, runs that still succeeded."""

    name: str
    points: int
    per_point: dict[str, int]
    runs: int = 0
    fired: int = 0
    succeeded_anyway: int = 0
    sampled: bool = False
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.per_point.items()))
        sample = " (sampled)" if self.sampled else ""
        return (f"fault sweep {self.name}: {self.points} injection points ({kinds}); {self.runs} runs{sample} "
                f"with ENOSPC/EIO, {self.fired} failed as injected, {self.succeeded_anyway} completed; "
                f"all checks passed in {self.seconds:.1f}s")


def sweep(
    name: str,
    setup: Callable[[], object],
    op: Callable[[object], object],
    check: Callable[[object, BaseException | None], None],
    *,
    max_points: int | None = None,
) -> SweepResult:
    """Count the injection points of ``op``, then fail each one with each errno in turn.

    ``setup`` builds a fresh state (returned to ``op`` and ``check``); ``check`` gets the
    exception the failed run raised (``None`` when the run completed, which happens when the
    point it should fail at no longer exists in that run). With ``max_points``, a writer with
    more points is sampled evenly (first and last point always included).
    """
    started = time.monotonic()
    state = setup()
    with faults.armed() as counting:
        op(state)
    check(state, None)
    res = SweepResult(name, counting.total, dict(counting.per_point))
    points: Iterable[int] = range(1, counting.total + 1)
    if max_points is not None and counting.total > max_points:
        step = counting.total / max_points
        points = sorted({1, counting.total, *(1 + int(i * step) for i in range(max_points))})
        res.sampled = True
    for k in points:
        for err in ERRNOS:
            state = setup()
            exc: BaseException | None = None
            with faults.armed(fail_at=k, err=err) as plan:
                try:
                    op(state)
                except (OSError, BootreeError) as e:
                    exc = e
            res.runs += 1
            if plan.fired is None:
                assert exc is None, f"{name}: failed without an injected fault at point {k}: {exc!r}"
                res.succeeded_anyway += 1
            else:
                assert exc is not None, f"{name}: the fault at point {k} ({plan.fired}) was swallowed"
                res.fired += 1
                key = type(exc).__name__
                res.errors[key] = res.errors.get(key, 0) + 1
            try:
                check(state, exc)
            except AssertionError as e:
                raise AssertionError(f"{name}: after {errno.errorcode[err]} at point {k} ({plan.fired}): {e}") from e
    res.seconds = time.monotonic() - started
    print(res.line())
    return res


def verify_visible_objects(repo: Repo) -> int:
    """Every object under ``objects/`` is non-empty and matches its name; returns the count."""
    store = repo.store
    n = 0
    for otype, csum in store.iter_objects():
        n += 1
        path = store.path(otype, csum)
        assert os.lstat(path).st_size > 0 or os.path.islink(path), f"zero-length object {path}"
        if otype is ObjectType.FILE:
            store.verify_file(csum)
        else:
            data = store.load_metadata(otype, csum)
            assert hashlib.sha256(data).hexdigest() == csum, f"object {path} does not match its checksum"
    return n


def ostree_fsck(repo_path: Path) -> None:
    """``ostree fsck`` of ``repo_path`` must be clean (skipped silently without ostree)."""
    if shutil.which("ostree") is None:
        return
    proc = subprocess.run(["ostree", "fsck", f"--repo={repo_path}"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"ostree fsck:\n{proc.stdout}\n{proc.stderr}"


def fast_dir(tmp_path: Path) -> Path:
    """A scratch directory on tmpfs when there is one (``/dev/shm``), else ``tmp_path``.

    The sweeps repeat an operation a hundred times, each ending in ``syncfs``; on a shared
    disk that flush dominates the run time, on tmpfs it is free. The code paths are the same.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = shm / f"bootree-faults-{os.getpid()}-{os.urandom(4).hex()}"
        d.mkdir()
        return d
    return tmp_path


def scratch_dir(tmp_path: Path) -> Iterator[Path]:
    """The body of a ``scratch`` fixture: :func:`fast_dir`, removed afterwards."""
    d = fast_dir(tmp_path)
    yield d
    if d != tmp_path:
        shutil.rmtree(d, ignore_errors=True)
