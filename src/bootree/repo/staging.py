"""Staging directories under ``tmp/``: one per live transaction, locked, and cleaned when stale.

Layer: repo. Like libostree, every transaction stages its objects in
``tmp/staging-<boot id>-<random>`` and holds an exclusive OFD lock on ``<that name>-lock`` for as
long as it lives. A process killed mid-transaction leaves its directory behind, but the kernel
drops the lock with the process, so the next transaction (or ``prune``) can tell a stale
directory from a live one by trying the lock: it removes every staging directory it can lock
(of this boot: its owner is dead; of another boot: nothing from then can be running), and any
other ``tmp/`` entry older than ostree's expiry (``tmp-expiry-secs``, one day). A live
transaction's directory is never removed: its lock cannot be taken. A directory of this boot
without a lock file is left alone for a minute (libostree creates, then locks); a new
transaction takes it over instead (:class:`Staging`), as libostree does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs

__all__ = ["DEFAULT_TMP_EXPIRY", "Staging", "StagingCleanup", "boot_id", "clean_stale"]

log = logging.getLogger(__name__)

#: ostree's default ``[core] tmp-expiry-secs``: a day.
DEFAULT_TMP_EXPIRY = 86400

#: A staging directory without a lock file may belong to a writer that has created it but not yet
#: locked it (libostree creates, then locks): left alone for this long.
_UNLOCKED_GRACE = 60
_PREFIX = "staging-"
_LOCK_SUFFIX = "-lock"
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_FLOCK_FMT = "@hhqqi4x"


def boot_id() -> str:
    """This boot's id (as in staging directory names), or ``noboot`` if unknown.

    ``$OSTREE_BOOTID`` overrides it, as in libostree (its tests use it to play a later boot).
    """
    env = os.environ.get("OSTREE_BOOTID")
    if env:
        return env
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "noboot"


def _try_lock(path: str) -> int | None:
    """An fd holding an exclusive OFD lock on ``path`` (created if needed), or None if held elsewhere."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.fcntl(fd, _F_OFD_SETLK, struct.pack(_FLOCK_FMT, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


class Staging:
    """A transaction's private, locked staging directory.

    As libostree, a staging directory of this boot that no process holds (its owner died) is
    taken over instead of making a new one: locked, emptied and touched. This is also how a
    directory libostree has just created but not yet locked is treated safely: whoever locks it
    first owns it, and libostree then makes another one.
    """

    def __init__(self, tmp: Path) -> None:
        _fs.makedirs(tmp)
        prefix = f"{_PREFIX}{boot_id()}-"
        adopted = _adopt(tmp, prefix)
        if adopted is not None:
            name, fd = adopted
        else:
            name = f"{prefix}{os.urandom(6).hex()}"
            got = _try_lock(os.fspath(tmp / (name + _LOCK_SUFFIX)))
            if got is None:  # pragma: no cover - a random name nobody else can hold
                raise OSError(errno.EAGAIN, "staging lock already held", os.fspath(tmp / name))
            fd = got
        lock_path = os.fspath(tmp / (name + _LOCK_SUFFIX))
        self._lock_fd: int | None = fd
        self._lock_path = lock_path
        self.path = tmp / name
        if adopted is not None:
            return
        try:
            self.path.mkdir(mode=0o755)
        except BaseException:
            self._unlock()
            raise

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._lock_path)
            os.close(self._lock_fd)
            self._lock_fd = None

    def abandon(self) -> None:
        """Drop the lock but leave the directory, as libostree's failed transaction leaves it.

        The next transaction of this boot takes it over; one of another boot removes it.
        """
        self._unlock()

    def remove(self) -> None:
        """Delete the directory (whatever is left in it), then drop and remove the lock."""
        try:
            os.rmdir(self.path)  # empty after a commit: the common case
        except FileNotFoundError:
            pass
        except OSError:
            _fs.rmtree(self.path)
        self._unlock()


def _adopt(tmp: Path, prefix: str) -> tuple[str, int] | None:
    """Lock, empty and touch a staging directory of this boot that nobody holds: ``(name, lock fd)``."""
    try:
        names = sorted(os.listdir(tmp))
    except FileNotFoundError:
        return None
    for name in names:
        if not name.startswith(prefix) or name.endswith(_LOCK_SUFFIX):
            continue
        path = tmp / name
        if not path.is_dir() or path.is_symlink():
            continue
        fd = _try_lock(os.fspath(path) + _LOCK_SUFFIX)
        if fd is None:
            continue  # a live transaction's
        try:
            for entry in os.listdir(path):
                _remove(os.fspath(path / entry))
            os.utime(path)
        except FileNotFoundError:  # removed meanwhile by a cleanup that locked it before us
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        return name, fd
    return None


@dataclass(frozen=True, slots=True)
class StagingCleanup:
    """What :func:`clean_stale` removed."""

    staging_dirs: int = 0
    other: int = 0


def clean_stale(tmp: Path, *, expiry: int = DEFAULT_TMP_EXPIRY, now: float | None = None) -> StagingCleanup:
    """Remove stale staging directories (and other expired entries) under ``tmp/``.

    A staging directory is stale when its lock can be taken: the process that made it is gone.
    Other entries (ostree's own ``tmp/`` files, e.g. fetcher temporaries) are removed once
    older than ``expiry`` seconds; ``cache/`` is left alone, as ostree does.
    """
    now = time.time() if now is None else now
    try:
        names = os.listdir(tmp)
    except FileNotFoundError:
        return StagingCleanup()
    staged = other = 0
    listed = set(names)
    this_boot = f"{_PREFIX}{boot_id()}-"
    for name in names:
        path = os.fspath(tmp / name)
        if name.startswith(_PREFIX) and not name.endswith(_LOCK_SUFFIX):
            if (name.startswith(this_boot) and name + _LOCK_SUFFIX not in listed
                    and not _older(path, now, _UNLOCKED_GRACE)):
                continue  # maybe a writer between creating its directory and locking it
            fd = _try_lock(path + _LOCK_SUFFIX)
            if fd is None:
                continue  # a live transaction
            try:
                _remove(path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path + _LOCK_SUFFIX)
            finally:
                os.close(fd)
            staged += 1
            log.info("removed stale staging directory %s", path)
        elif name.startswith(_PREFIX) and name.endswith(_LOCK_SUFFIX):
            if name[: -len(_LOCK_SUFFIX)] not in listed and _older(path, now, expiry):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        elif name != "cache" and _older(path, now, expiry):
            _remove(path)
            other += 1
    return StagingCleanup(staged, other)


def _older(path: str, now: float, expiry: int) -> bool:
    try:
        return now - os.lstat(path).st_mtime > expiry
    except FileNotFoundError:
        return False


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            _fs.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
