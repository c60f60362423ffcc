"""fs-verity on real files: measure and enable through the kernel's ioctls, where supported.

Layer: composefs. ``FS_IOC_MEASURE_VERITY`` returns a file's fs-verity digest in O(1) when the
file has verity enabled (ext4 with ``-O verity``, btrfs, f2fs); ``FS_IOC_ENABLE_VERITY`` turns it
on (the file must be opened read-only with no writers). On file systems or kernels without
fs-verity both fail with ``EOPNOTSUPP``/``ENOTTY``/``ENODATA``; callers treat that as "not
available" unless the configuration demands verity, and compute the digest in software
(:mod:`bootree.format.fsverity`) where they need the value.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct

from bootree.errors import VerificationError
from bootree.format.fsverity import FS_VERITY_HASH_ALG_SHA256, FsVerityHasher

__all__ = [
    "FS_IOC_ENABLE_VERITY",
    "FS_IOC_MEASURE_VERITY",
    "VerityUnsupported",
    "enable_arg",
    "enable_verity",
    "file_digest",
    "measure_verity",
]


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("f") << 8) | nr


_ENABLE_ARG = struct.Struct("<IIIIQIIQ88x")  # struct fsverity_enable_arg: 128 bytes
#: ``_IOW('f', 133, struct fsverity_enable_arg)``
FS_IOC_ENABLE_VERITY = _ioc(1, 133, _ENABLE_ARG.size)
#: ``_IOWR('f', 134, struct fsverity_digest)`` (the 4-byte header; the digest follows it)
FS_IOC_MEASURE_VERITY = _ioc(3, 134, 4)

_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.ENODATA}


class VerityUnsupported(VerificationError):
    """The file system (or kernel) cannot enable or measure fs-verity on this file."""


def enable_arg(block_size: int = 4096, salt: bytes = b"") -> bytes:
    """The ``fsverity_enable_arg`` for SHA-256 (salt pointers are filled by :func:`enable_verity`)."""
    return _ENABLE_ARG.pack(1, FS_VERITY_HASH_ALG_SHA256, block_size, len(salt), 0, 0, 0, 0)


def measure_verity(fd: int) -> bytes | None:
    """The kernel's SHA-256 fs-verity digest of an open file, or ``None`` if the file has no
    fs-verity.

    Raises:
        VerityUnsupported: if the file system or kernel has no fs-verity at all (so callers can
            stop asking for the other files).
    """
    buf = bytearray(struct.pack("<HH", 0, 64) + bytes(64))
    try:
        fcntl.ioctl(fd, FS_IOC_MEASURE_VERITY, buf, True)
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        if e.errno in _UNSUPPORTED:
            raise VerityUnsupported(f"fs-verity is not supported here ({os.strerror(e.errno)})") from e
        raise
    alg, size = struct.unpack_from("<HH", buf)
    if alg != FS_VERITY_HASH_ALG_SHA256 or size != 32:
        return None
    return bytes(buf[4:36])


def enable_verity(fd: int, *, block_size: int = 4096) -> None:
    """Enable fs-verity (SHA-256, no salt) on a file opened read-only.

    Raises:
        VerityUnsupported: if the file system or kernel does not support it.
        OSError: for other failures (e.g. the file is open for writing: ``ETXTBSY``).
    """
    arg = ctypes.create_string_buffer(enable_arg(block_size), _ENABLE_ARG.size)
    try:
        fcntl.ioctl(fd, FS_IOC_ENABLE_VERITY, arg)
    except OSError as e:
        if e.errno == errno.EEXIST:
            return  # already enabled
        if e.errno in _UNSUPPORTED:
            raise VerityUnsupported(f"fs-verity is not supported here ({os.strerror(e.errno)})") from e
        raise


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
