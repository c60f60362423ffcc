"""The immutable bit (``chattr +i``) on deployment roots.

Layer: sysroot. ostree sets ``FS_IMMUTABLE_FL`` on each deployment's root directory so that
nothing can add or remove top-level entries of a deployed tree (``/etc`` and ``/var`` below it
stay writable). bootree does the same, for the same protection and so that ``ostree admin``
finds what it expects, with the same opt-out: ``OSTREE_SYSROOT_DEBUG=mutable-deployments``
(what ostree's own tests and ours use). Filesystems without the flag (tmpfs, overlayfs) are
skipped silently, as are unprivileged callers: the bit is a safety net, not a correctness
requirement. Removal clears the bit first.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from pathlib import Path

__all__ = ["is_immutable", "set_immutable"]

log = logging.getLogger(__name__)

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x00000010
_UNSUPPORTED = (errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EPERM, errno.EACCES)


def _flags(fd: int) -> int:
    buf = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("l", 0))
    return int(struct.unpack("l", buf)[0])


def is_immutable(path: Path) -> bool:
    """Whether ``path`` (a directory) has the immutable flag; ``False`` where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return bool(_flags(fd) & _FS_IMMUTABLE_FL)
    except OSError:
        return False
    finally:
        os.close(fd)


def set_immutable(path: Path, on: bool) -> bool:
    """Set or clear ``FS_IMMUTABLE_FL`` on a directory; returns whether the flag is supported."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = _flags(fd)
        new = flags | _FS_IMMUTABLE_FL if on else flags & ~_FS_IMMUTABLE_FL
        if new != flags:
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("l", new))
        return True
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            log.debug("immutable flag not supported on %s: %s", path, e.strerror)
            return False
        raise
    finally:
        os.close(fd)
