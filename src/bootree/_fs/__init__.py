"""Durable filesystem primitives: atomic writes, directory fsync, syncfs, OFD locks, xattrs.

Layer: bottom utility (may be imported by every layer above format). Every on-disk change
bootree makes goes through one of these, so the crash-safety rules live in one place:
write to a temporary file in the same directory, fsync it, rename it over the target, fsync
the directory. A crash at any point leaves either the old or the new content, never a mix.

The writers' own ``write``/``fsync``/``rename`` calls go through the thin wrappers below, each a
fault point of :mod:`bootree._fs.faults` (the tests fail them one by one). :mod:`.beneath`
resolves paths inside a directory tree only (:class:`Tree`), never through a symlink onto the
host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bootree._fs import faults
from bootree._fs.beneath import Tree, open_beneath, openat2_supported
from bootree.errors import LockTimeout, VerityUnsupported

__all__ = [
    "OfdLock",
    "Tree",
    "copy_file_range",
    "faults",
    "fsverity_enable",
    "fsverity_measure",
    "fsync",
    "fsync_dir",
    "list_xattrs",
    "makedirs",
    "ofd_lock",
    "open_beneath",
    "openat2_supported",
    "rename",
    "rmtree",
    "syncfs",
    "temp_name",
    "write",
    "write_all",
    "write_atomic",
    "write_new",
]


# --- the writers' system calls, each a fault-injection point (see faults.py) ------------------
# Disarmed, each wrapper costs one global lookup and a comparison with None.


def write(fd: int, data: bytes | memoryview) -> int:
    """``os.write`` (fault point ``write``)."""
    if faults.plan is not None:
        faults.plan.hit("write", fd)
    return os.write(fd, data)


def writev(fd: int, buffers: list[bytes | memoryview]) -> int:
    """``os.writev`` (fault point ``write``): several buffers in one system call, not joined."""
    if faults.plan is not None:
        faults.plan.hit("write", fd)
    return os.writev(fd, buffers)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``, looping over short writes."""
    view = memoryview(data)
    while view:
        view = view[write(fd, view) :]


def copy_file_range(src: int, dst: int, count: int) -> int:
    """``os.copy_file_range`` (fault point ``write``)."""
    if faults.plan is not None:
        faults.plan.hit("write", dst)
    return os.copy_file_range(src, dst, count)


def fsync(fd: int) -> None:
    """``os.fsync`` (fault point ``fsync``)."""
    if faults.plan is not None:
        faults.plan.hit("fsync", fd)
    os.fsync(fd)


def rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str, *, src_dir_fd: int | None = None,
           dst_dir_fd: int | None = None) -> None:
    """``os.rename`` (fault point ``rename``)."""
    if faults.plan is not None:
        faults.plan.hit("rename", dst)
    os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def write_new(path: os.PathLike[str] | str, data: bytes, mode: int = 0o644) -> None:
    """Create (or truncate) ``path`` and write ``data``: for files in a private staging area.

    Not durable by itself (the caller flushes the whole staging area at once); on a failed
    write the partial file is removed, so nothing half-written stays under the name.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)



def temp_name(prefix: str = ".tmp-") -> str:
    """A random file name for a temporary file beside its target."""
    return f"{prefix}{os.urandom(8).hex()}"


def fsync_dir(path: os.PathLike[str] | str) -> None:
    """fsync a directory so that renames and new entries in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def read_all(fd: int) -> bytes:
    """Everything left to read from ``fd`` (a file or a pipe), with plain ``os.read`` calls."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def syncfs(path: os.PathLike[str] | str) -> None:
    """Flush the whole filesystem holding ``path`` (one call instead of an fsync per file)."""
    import ctypes  # only here: loading libc through ctypes costs startup time for every command

    if faults.plan is not None:
        faults.plan.hit("fsync", path)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fspath(path))
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range: Any = None


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing ``fd``'s dirty pages now, without waiting for them.

    A transaction ends with ``syncfs``, which waits for every byte written since it began;
    starting the writeback of large files as soon as they are written lets the disk work while
    the rest arrives, so that the final flush has little left to do (dpkg does the same).
    Best effort: ignored where ``sync_file_range`` is not available.
    """
    global _sync_file_range
    if _sync_file_range is None:
        import ctypes

        try:
            func = ctypes.CDLL(None, use_errno=True).sync_file_range
            func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = func
        except AttributeError:
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def write_atomic(path: os.PathLike[str] | str, data: bytes, *, mode: int = 0o644, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically: temp file, fsync, rename, fsync the directory.

    A reader (or a crash) sees either the old file or the new one, never a partial write.
    """
    do_fsync = fsync
    p = Path(path)
    tmp = p.parent / temp_name(f".{p.name}.")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
            if do_fsync:
                _fsync(fd)
        finally:
            os.close(fd)
        rename(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if do_fsync:
        fsync_dir(p.parent)


_fsync = fsync  # write_atomic's ``fsync`` argument shadows the function


def makedirs(path: os.PathLike[str] | str, mode: int = 0o755) -> None:
    """``mkdir -p`` that tolerates existing directories."""
    os.makedirs(path, mode=mode, exist_ok=True)


def rmtree(path: os.PathLike[str] | str) -> None:
    """Remove a tree, making read-only directories writable first; a missing path is fine.

    Descriptor-relative and iterative (an explicit stack of open directories): symlinks are
    removed, never followed, and a tree deeper than Python's recursion limit (which
    ``shutil.rmtree`` and ``os.walk`` of Python 3.11 recurse into) is removed too.
    """
    p = os.fspath(path)
    if not os.path.lexists(p):
        return
    if os.path.islink(p) or not os.path.isdir(p):
        os.unlink(p)
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    # Each frame: (fd, parent fd or None for the top, name in the parent, subdirectories left).
    stack: list[tuple[int, int | None, str, Iterator[str]]] = []

    def enter(parent: int | None, name: str) -> None:
        fd = os.open(name if parent is not None else p, flags, dir_fd=parent)
        try:
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o700)
            subdirs = []
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.name)
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.name, dir_fd=fd)
        except BaseException:
            os.close(fd)
            raise
        stack.append((fd, parent, name, iter(subdirs)))

    try:
        enter(None, p)
        while stack:
            fd, parent, name, subdirs = stack[-1]
            sub = next(subdirs, None)
            if sub is not None:
                enter(fd, sub)
                continue
            stack.pop()
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(name, dir_fd=parent)
    finally:
        for fd, *_ in stack:
            os.close(fd)


def list_xattrs(path: os.PathLike[str] | str | int, *, dir_fd: int | None = None) -> tuple[tuple[bytes, bytes], ...]:
    """All xattrs of a file (not following symlinks), sorted by name; empty values skipped.

    Returns ``()`` when the filesystem does not support xattrs. ostree skips empty values too.
    """
    target: str | int
    if dir_fd is not None and not isinstance(path, int):
        target = f"/proc/self/fd/{dir_fd}/{os.fspath(path)}"
    else:
        target = path if isinstance(path, int) else os.fspath(path)
    follow = isinstance(target, int)
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA):
            return ()
        raise
    out = []
    for name in names:
        try:
            value = os.getxattr(target, name, follow_symlinks=follow)
        except OSError as e:
            if e.errno == errno.ENODATA:
                continue
            raise
        if value:
            out.append((name.encode(), value))
    out.sort()
    return tuple(out)


# --- OFD locks (interoperate with libostree, which uses F_OFD_SETLK on the repo's .lock) -------

_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_FLOCK_FMT = "@hhqqi4x"  # struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid


class OfdLock:
    """A whole-file open-file-description lock, shared or exclusive.

    libostree takes these on ``<repo>/.lock`` (shared for transactions, exclusive for prune), and
    plain ``flock()`` would not conflict with them, so bootree uses the same kind.
    """

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None

    def acquire(self, *, exclusive: bool, timeout: float = 30.0) -> None:
        """Take the lock, polling until ``timeout`` seconds have passed.

        Raises:
            LockTimeout: when another process holds a conflicting lock for too long.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        ltype = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.fcntl(fd, _F_OFD_SETLK, struct.pack(_FLOCK_FMT, ltype, os.SEEK_SET, 0, 0, 0))
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    kind = "exclusive" if exclusive else "shared"
                    raise LockTimeout(f"timed out waiting for a {kind} lock on {self.path}") from e
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        self._fd = fd

    @property
    def fd(self) -> int | None:
        """The locked descriptor while the lock is held (e.g. to write a pid into it)."""
        return self._fd

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def ofd_lock(path: os.PathLike[str] | str, *, exclusive: bool, timeout: float = 30.0) -> Iterator[None]:
    """Hold an :class:`OfdLock` on ``path`` for the duration of a ``with`` block."""
    lock = OfdLock(path)
    lock.acquire(exclusive=exclusive, timeout=timeout)
    try:
        yield
    finally:
        lock.release()


# --- fs-verity ---------------------------------------------------------------------------------
# <linux/fsverity.h>: FS_IOC_ENABLE_VERITY = _IOW('f', 133, struct fsverity_enable_arg) (128 bytes),
# FS_IOC_MEASURE_VERITY = _IOWR('f', 134, struct fsverity_digest) (4-byte header + digest).
FS_IOC_ENABLE_VERITY = (1 << 30) | (128 << 16) | (ord("f") << 8) | 133
FS_IOC_MEASURE_VERITY = (3 << 30) | (4 << 16) | (ord("f") << 8) | 134
_VERITY_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS})


def fsverity_enable_arg(block_size: int = 4096) -> bytes:
    """``struct fsverity_enable_arg`` for SHA-256 and no salt or signature."""
    return struct.pack("<IIIIQIIQ88x", 1, 1, block_size, 0, 0, 0, 0, 0)


def fsverity_enable(fd: int, *, block_size: int = 4096) -> bool:
    """Enable fs-verity (SHA-256, no salt) on a file opened read-only with no writers.

    Returns False if the file system or kernel does not support fs-verity (already enabled
    counts as success).

    Raises:
        OSError: for other failures (``ETXTBSY`` when a writer is open, ``EACCES``...).
    """
    arg = bytearray(fsverity_enable_arg(block_size))
    try:
        fcntl.ioctl(fd, FS_IOC_ENABLE_VERITY, arg, False)
    except OSError as e:
        if e.errno == errno.EEXIST:
            return True
        if e.errno in _VERITY_UNSUPPORTED:
            return False
        raise
    return True


def fsverity_measure(fd: int) -> bytes | None:
    """The kernel's SHA-256 fs-verity digest of an open file; ``None`` if it has no fs-verity.

    Raises:
        VerityUnsupported: if the file system or kernel has no fs-verity at all.
        OSError: for other failures.
    """
    buf = bytearray(struct.pack("<HH", 0, 64) + bytes(64))
    try:
        fcntl.ioctl(fd, FS_IOC_MEASURE_VERITY, buf, True)
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        if e.errno in _VERITY_UNSUPPORTED:
            raise VerityUnsupported(f"fs-verity is not supported here ({os.strerror(e.errno)})") from e
        raise
    alg, size = struct.unpack_from("<HH", buf)
    return bytes(buf[4 : 4 + size]) if alg == 1 and size == 32 else None
