"""Discovering and running health checks: required and wanted, from /usr/lib and /etc.

Layer: health. A check is an executable file in ``required.d/`` or ``wanted.d/`` under
``usr/lib/bootree/health.d`` (shipped by the image) or ``etc/bootree/health.d`` (added by the
admin). Like systemd drop-ins, a file in ``/etc`` replaces the one with the same name in
``/usr/lib``, and an empty file or a symlink to ``/dev/null`` there masks it. Checks run one
at a time in name order, each with a timeout; a required check that fails, times out or cannot
run makes the boot unhealthy, a wanted one only logs (greenboot's ``required.d``/``wanted.d``).
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bootree import _run
from bootree.errors import ExternalCommandError

__all__ = ["DIRS", "CheckResult", "HealthCheck", "Kind", "discover", "run_checks"]

log = logging.getLogger(__name__)

#: Search order: later directories override earlier ones by file name.
DIRS = (PurePosixPath("usr/lib/bootree/health.d"), PurePosixPath("etc/bootree/health.d"))
DEFAULT_TIMEOUT = 60.0


class Kind(enum.StrEnum):
    """Whether a failure makes the boot bad."""

    REQUIRED = "required"
    WANTED = "wanted"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One check program."""

    name: str
    kind: Kind
    path: Path


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check."""

    check: HealthCheck
    ok: bool
    returncode: int
    output: str
    seconds: float

    @property
    def blocking(self) -> bool:
        """A failed required check: the boot is not good."""
        return not self.ok and self.check.kind is Kind.REQUIRED


def _masked(p: Path) -> bool:
    try:
        if os.path.islink(p) and os.readlink(p) == "/dev/null":
            return True
        return p.is_file() and p.stat().st_size == 0
    except OSError:
        return False


def discover(root: Path = Path("/")) -> list[HealthCheck]:
    """The checks of the system at ``root``, required first, each kind in name order."""
    out: list[HealthCheck] = []
    for kind in (Kind.REQUIRED, Kind.WANTED):
        found: dict[str, Path] = {}
        for d in DIRS:
            sub = root / d / f"{kind.value}.d"
            try:
                names = os.listdir(sub)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                if not name.startswith("."):
                    found[name] = sub / name
        for name in sorted(found):
            if not _masked(found[name]):
                out.append(HealthCheck(name, kind, found[name]))
    return out


def run_checks(checks: Sequence[HealthCheck], *, timeout: float = DEFAULT_TIMEOUT) -> list[CheckResult]:
    """Run each check (no shell; its own executable bit decides), in order, with ``timeout`` each."""
    results = []
    for c in checks:
        t0 = time.monotonic()
        try:
            proc = _run.run([c.path], timeout=timeout, check=False)
            rc, out = proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")
        except ExternalCommandError as e:
            rc, out = e.returncode, e.stderr
        r = CheckResult(c, rc == 0, rc, out.strip()[-2000:], time.monotonic() - t0)
        log.log(logging.INFO if r.ok else logging.WARNING, "health check %s (%s): %s", c.name, c.kind.value,
                "ok" if r.ok else f"failed with status {rc}")
        results.append(r)
    return results
