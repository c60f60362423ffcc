"""A freeze/thaw cycle of ``/boot``'s file system, guarded by a watchdog process (as libostree's).

Layer: utility (part of ``_fs``). ``syncfs`` flushes data but does not empty the journal of a
file system such as XFS, and GRUB, which reads ``/boot`` without replaying a journal, can then
miss a freshly written configuration. ``FIFREEZE`` followed by ``FITHAW`` forces everything,
journal included, to its final place. A frozen file system blocks every writer, so the freeze is
guarded the way libostree guards it: a watchdog child process, which ignores SIGINT and SIGTERM,
thaws the file system itself if the parent does not report completion within 30 seconds (the
parent was killed between the two ioctls).

Only a ``/boot`` that is its own mount point is frozen: freezing the file system a directory
sysroot merely lives in (a test's temporary directory on ``/``) would stall the whole host for
no gain, and there ``syncfs`` is what the boot loader needs. Where freezing is not possible
(``EOPNOTSUPP``, ``EPERM`` when not root, ``EBUSY`` already frozen) ``syncfs`` is used, as in
libostree.

``test_watchdog`` is ostree's ``OSTREE_SYSROOT_DEBUG=test-fifreeze``: the watchdog is started
as for a real freeze and given one second, the parent waits for it and then fails, so tests can
check that the watchdog runs and reports ("fifreeze watchdog was run").
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from typing import TYPE_CHECKING

from bootree.errors import FreezeError

if TYPE_CHECKING:
    import socket

__all__ = ["freeze_thaw"]

FIFREEZE = 0xC0045877  # _IOWR('X', 119, int)
FITHAW = 0xC0045878  # _IOWR('X', 120, int)
_WATCHDOG_TIMEOUT_MS = 30_000
_FALLBACK = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EPERM, errno.EBUSY, errno.ENOTTY, errno.EINVAL)


def _is_mount_point(fd: int) -> bool:
    parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    try:
        return os.fstat(parent).st_dev != os.fstat(fd).st_dev
    finally:
        os.close(parent)


def _watchdog(sock: socket.socket, fd: int, test: bool) -> None:  # pragma: no cover - runs in the child
    """The child: tell the parent it is ready, wait for "freezing", then for "done" or thaw."""
    try:
        if not test:
            os.setsid()  # outlive a Ctrl-C of the parent's process group
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        sock.send(b"!")
        if sock.recv(1) != b"!":
            os._exit(1)
        import select  # loaded by the parent before the fork: a dictionary lookup here

        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLHUP)
        if not poller.poll(1000 if test else _WATCHDOG_TIMEOUT_MS):
            try:
                fcntl.ioctl(fd, FITHAW, 0)
            except OSError:
                pass  # not frozen (EINVAL), not root, not supported: nothing to undo
        if test:
            os.write(2, b"fifreeze watchdog was run\n")
    finally:
        os._exit(0)


def freeze_thaw(path: os.PathLike[str] | str, *, test_watchdog: bool = False) -> bool:
    """Flush ``path``'s file system completely; whether it was frozen and thawed (else synced).

    The fallback flush is ``_fs.syncfs`` (a fault-injection point).

    Raises:
        FreezeError: an ioctl failed unexpectedly, or ``test_watchdog``.
        OSError: from the fallback ``syncfs``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not test_watchdog and not _is_mount_point(fd):
            _sync(path)
            return False
        import select  # noqa: F401  # the watchdog's, loaded before the fork (as socket)
        import socket  # on first use: only a mount point is frozen; every deploy imports this module

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            parent.close()
            _watchdog(child, fd, test_watchdog)
        child.close()
        with parent:
            if parent.recv(1) != b"!":
                raise FreezeError("read(watchdog init)")
            parent.send(b"!")
            if test_watchdog:
                _, status = os.waitpid(pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    raise FreezeError("test-fifreeze: the watchdog failed")
                raise FreezeError("aborting due to test-fifreeze")
            try:
                try:
                    fcntl.ioctl(fd, FIFREEZE, 0)
                except OSError as e:
                    if e.errno not in _FALLBACK:
                        raise FreezeError(f"ioctl(FIFREEZE): {e.strerror}") from e
                    _sync(path)
                    return False
                try:
                    fcntl.ioctl(fd, FITHAW, 0)
                except OSError as e:
                    if e.errno != errno.EINVAL:  # EINVAL: thawed already (by the watchdog)
                        raise FreezeError(f"ioctl(FITHAW): {e.strerror}") from e
                return True
            finally:
                parent.send(b"!")
                os.waitpid(pid, 0)
    finally:
        os.close(fd)


def _sync(path: os.PathLike[str] | str) -> None:
    from bootree._fs import syncfs

    syncfs(path)
