"""Fault injection for the writers: make the N-th write, fsync or rename fail with an errno.

Layer: utility (part of ``_fs``). Every durable write of the repository, pull and sysroot code
goes through the thin wrappers of :mod:`bootree._fs` (``write``, ``fsync``, ``rename``, ...),
and each wrapper first calls :func:`hit` with its point's name. Disarmed (the normal case)
``hit`` is never even called: the wrappers test the module attribute :data:`plan` against
``None``, one global load per call. Armed by a test through :func:`armed`, the plan counts the
calls per point and raises ``OSError(errno)`` at the N-th one, which is how a full disk
(``ENOSPC``) or a failing device (``EIO``) looks to the caller, without ``LD_PRELOAD``.

A counting run (``fail_at=None``) learns how many injection points an operation has; a test
then repeats the operation failing at each point in turn.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["POINTS", "FaultPlan", "armed", "hit", "plan"]

#: The named points: ``write`` covers ``write``/``copy_file_range``, ``fsync`` covers
#: ``fsync``/``syncfs`` and the directory fsync, ``rename`` covers ``rename``/``replace``.
POINTS = ("write", "fsync", "rename")


@dataclass
class FaultPlan:
    """What an armed seam does: count calls and fail the ``fail_at``-th (1-based) one."""

    fail_at: int | None = None
    """Fail the call with this ordinal among the counted points; ``None`` only counts."""
    err: int = errno.ENOSPC
    points: frozenset[str] = frozenset(POINTS)
    """Which points count (the others pass untouched)."""
    total: int = 0
    per_point: Counter[str] = field(default_factory=Counter)
    fired: str | None = None
    """``"<point> <target>"`` of the call that failed, once it has."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def hit(self, point: str, target: object) -> None:
        """Count one call at ``point``; raise the planned error if it is the one to fail."""
        if point not in self.points:
            return
        with self._lock:
            self.total += 1
            self.per_point[point] += 1
            fire = self.total == self.fail_at
            if fire:
                self.fired = f"{point} {target}"
        if fire:
            raise OSError(self.err, f"{os.strerror(self.err)} (injected at {point} #{self.fail_at})", str(target))


plan: FaultPlan | None = None
"""The armed plan, or ``None`` (the wrappers check this before anything else)."""


def hit(point: str, target: object) -> None:
    """Report a call at ``point`` to the armed plan, if any."""
    p = plan
    if p is not None:
        p.hit(point, target)


@contextlib.contextmanager
def armed(
    fail_at: int | None = None, err: int = errno.ENOSPC, points: Iterable[str] = POINTS
) -> Iterator[FaultPlan]:
    """Arm the seam for the ``with`` block (not re-entrant: one plan at a time).

    Raises:
        RuntimeError: if a plan is already armed (two tests must not share the seam).
    """
    global plan
    wanted = frozenset(points)
    unknown = wanted - frozenset(POINTS)
    if unknown:
        raise ValueError(f"unknown fault points: {sorted(unknown)}")
    if plan is not None:
        raise RuntimeError("a fault plan is already armed")
    p = FaultPlan(fail_at=fail_at, err=err, points=wanted)
    plan = p
    try:
        yield p
    finally:
        plan = None
