"""fs-verity on real files: measure and enable through the kernel's ioctls, where supported.

Layer: composefs. ``FS_IOC_MEASURE_VERITY`` returns a file's fs-verity digest in O(1) when the
file has verity enabled (ext4 with ``-O verity``, btrfs, f2fs); ``FS_IOC_ENABLE_VERITY`` turns it
on (the file must be opened read-only with no writers). On file systems or kernels without
fs-verity both fail with ``EOPNOTSUPP``/``ENOTTY``/``ENODATA``; callers treat that as "not
available" unless the configuration demands verity, and compute the digest in software
(:mod:`bootree.format.fsverity`) where they need the value.
"""

from __future__ import annotations

import os

from bootree import _fs
from bootree.errors import VerityUnsupported
from bootree.format.fsverity import FsVerityHasher

__all__ = [
    "FS_IOC_ENABLE_VERITY",
    "FS_IOC_MEASURE_VERITY",
    "VerityUnsupported",
    "enable_arg",
    "enable_verity",
    "file_digest",
    "measure_verity",
]


#: ``_IOW('f', 133, struct fsverity_enable_arg)``
FS_IOC_ENABLE_VERITY = _fs.FS_IOC_ENABLE_VERITY
#: ``_IOWR('f', 134, struct fsverity_digest)`` (the 4-byte header; the digest follows it)
FS_IOC_MEASURE_VERITY = _fs.FS_IOC_MEASURE_VERITY


def enable_arg(block_size: int = 4096) -> bytes:
    """The ``fsverity_enable_arg`` for SHA-256, no salt, no signature."""
    return _fs.fsverity_enable_arg(block_size)


def measure_verity(fd: int) -> bytes | None:
    """The kernel's SHA-256 fs-verity digest of an open file, or ``None`` if the file has no
    fs-verity.

    Raises:
        VerityUnsupported: if the file system or kernel has no fs-verity at all (so callers can
            stop asking for the other files).
    """
    return _fs.fsverity_measure(fd)


def enable_verity(fd: int, *, block_size: int = 4096) -> None:
    """Enable fs-verity (SHA-256, no salt) on a file opened read-only.

    Raises:
        VerityUnsupported: if the file system or kernel does not support it.
        OSError: for other failures (e.g. the file is open for writing: ``ETXTBSY``).
    """
    if not _fs.fsverity_enable(fd, block_size=block_size):
        raise VerityUnsupported("fs-verity is not supported on this file system or kernel")


def file_digest(fd: int, *, measure: bool = True) -> bytes:
    """The fs-verity digest of an open file: measured by the kernel when possible, else computed."""
    if measure:
        try:
            got = measure_verity(fd)
        except VerityUnsupported:
            got = None
        if got is not None:
            return got
    h = FsVerityHasher()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    return h.digest()
