"""Opening paths inside a directory tree only: never through a symlink onto the host.

Layer: utility (part of ``_fs``). A deployment tree comes from a commit, and a commit may hold
any symlink: ``usr/etc -> /etc/ssh`` or ``usr/lib/modules -> ../../../../../lib/modules``. A
plain ``open(root / "usr/etc/...")`` resolves such a link through the host's ``/``, so copying
"the tree's /etc" would copy the host's. Every operation that reads from or writes into a
deployment tree therefore resolves its paths here, relative to a descriptor of the tree root:

* :func:`open_beneath` refuses any symlink in the path (``ELOOP``) and any ``..`` (``EXDEV``):
  ``openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)``;
* ``in_root=True`` follows symlinks as if the tree root were ``/`` (an absolute link and every
  ``..`` stay inside): ``openat2(RESOLVE_IN_ROOT)``, for files a tree legitimately reaches
  through links (``etc/os-release -> ../usr/lib/os-release``).

Python has no ``os.openat2``, so it is called through ``ctypes``; where the kernel (< 5.6) or a
seccomp filter lacks it, both modes fall back to walking one component at a time with
``O_NOFOLLOW`` relative to the previous component's descriptor, which resolves the same way.
:class:`Tree` wraps a root descriptor with the few operations the copy and merge code needs.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

__all__ = ["Tree", "open_beneath", "openat2_supported"]

_SYS_OPENAT2 = 437  # the same number on every architecture (the syscall postdates the split tables)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE_IN_ROOT = 0x10
_MAX_LINKS = 40  # the kernel's own limit on symlinks followed in one lookup

_openat2: Any = None  # the ctypes function once probed, False when unavailable


def _probe() -> Any:
    global _openat2
    if _openat2 is None:
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.syscall
            fn.restype = ctypes.c_long
        except (OSError, AttributeError):
            _openat2 = False
            return _openat2

        class OpenHow(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

        def call(dirfd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
            how = OpenHow(flags, mode, resolve)
            fd = int(fn(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(path),
                        ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))))
            if fd < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), os.fsdecode(path))
            return fd

        try:
            os.close(call(-100, b"/", os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE_NO_SYMLINKS))  # AT_FDCWD
            _openat2 = call
        except OSError:  # ENOSYS (old kernel), EPERM (seccomp): walk component by component
            _openat2 = False
    return _openat2


def openat2_supported() -> bool:
    """Whether the running kernel lets this process call ``openat2`` (probed once)."""
    return bool(_probe())


def _components(rel: str) -> list[str]:
    if rel.startswith("/"):
        raise OSError(errno.EXDEV, "absolute path where a path inside the tree was expected", rel)
    return [c for c in rel.split("/") if c not in ("", ".")]


def _walk_nofollow(dirfd: int, parts: list[str], flags: int, mode: int) -> int:
    """The fallback of RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH: one ``openat(O_NOFOLLOW)`` per part."""
    if ".." in parts:
        raise OSError(errno.EXDEV, "'..' in a path inside the tree", "/".join(parts))
    if not parts:
        return os.open(".", flags, mode, dir_fd=dirfd)
    cur = dirfd
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except NotADirectoryError as e:
                # A symlink opened with O_DIRECTORY|O_NOFOLLOW reports ENOTDIR: say ELOOP, as openat2.
                if stat.S_ISLNK(os.stat(part, dir_fd=cur, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/".join(parts)) from e
                raise
            if cur != dirfd:
                os.close(cur)
            cur = nxt
        if flags & os.O_PATH:
            # O_PATH|O_NOFOLLOW opens a symlink itself instead of failing: refuse it as openat2 does.
            st = os.stat(parts[-1], dir_fd=cur, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/".join(parts))
        return os.open(parts[-1], flags | os.O_NOFOLLOW, mode, dir_fd=cur)
    finally:
        if cur != dirfd:
            os.close(cur)


def _resolve_in_root(dirfd: int, parts: list[str]) -> list[str]:
    """Resolve symlinks of ``parts`` with ``dirfd`` as ``/``: a symlink-free path inside it."""
    out: list[str] = []
    todo = list(parts)
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if out:
                out.pop()
            continue
        try:
            st = _stat_in(dirfd, out, part)
        except FileNotFoundError:
            out.append(part)
            out.extend(todo)  # the rest cannot exist; let the final open report ENOENT
            return [p for p in out if p != ".."]
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/".join(parts))
            target = _readlink_in(dirfd, out, part)
            if target.startswith("/"):
                out = []
            todo = _components(target.lstrip("/")) + todo
            continue
        out.append(part)
    return out


def _stat_in(dirfd: int, parent: list[str], name: str) -> os.stat_result:
    fd = _walk_nofollow(dirfd, parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0)
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def _readlink_in(dirfd: int, parent: list[str], name: str) -> str:
    if not parent:
        return os.readlink(name, dir_fd=dirfd)
    fd = _walk_nofollow(dirfd, parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0)
    try:
        return os.readlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def open_beneath(dirfd: int, rel: str, flags: int = os.O_RDONLY, mode: int = 0o644, *, in_root: bool = False) -> int:
    """Open ``rel`` relative to the directory descriptor ``dirfd``, never leaving it.

    Without ``in_root`` any symlink on the way (the last component included) fails with
    ``ELOOP`` and ``..`` with ``EXDEV``; with it, symlinks and ``..`` resolve inside ``dirfd``
    as if it were ``/``. ``O_CLOEXEC`` is always added.

    Raises:
        OSError: as ``open`` would, plus the two above.
    """
    flags |= os.O_CLOEXEC
    parts = _components(rel)
    if not in_root and ".." in parts:
        raise OSError(errno.EXDEV, "'..' in a path inside the tree", rel)
    fn = _probe()
    if fn:
        resolve = (_RESOLVE_IN_ROOT if in_root else _RESOLVE_NO_SYMLINKS | _RESOLVE_BENEATH) | _RESOLVE_NO_MAGICLINKS
        path = "/".join(parts) or "."
        return int(fn(dirfd, os.fsencode(path), flags, mode if flags & os.O_CREAT else 0, resolve))
    if in_root:
        parts = _resolve_in_root(dirfd, parts)
    return _walk_nofollow(dirfd, parts, flags, mode)


class Tree:
    """A directory (a deployment root, its ``usr/etc``) whose paths resolve inside it only.

    The root itself is opened by path (the caller's own, trusted); everything below it through
    :func:`open_beneath`. Use as a context manager, or :meth:`close` it.
    """

    def __init__(self, path: os.PathLike[str] | str | None = None, *, fd: int | None = None) -> None:
        if fd is None:
            if path is None:
                raise ValueError("Tree needs a path or a descriptor")
            fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fd = fd
        self.path = os.fspath(path) if path is not None else f"/proc/self/fd/{fd}"

    def close(self) -> None:
        """Close the root descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subtree(self, rel: str) -> Tree:
        """The directory ``rel`` of this tree as a tree of its own (no symlink on the way).

        Raises:
            OSError: ``ELOOP`` if ``rel`` or a parent is a symlink, ``ENOTDIR``, ``ENOENT``.
        """
        fd = open_beneath(self.fd, rel, os.O_PATH | os.O_DIRECTORY)
        return Tree(os.path.join(self.path, rel), fd=fd)

    def open(self, rel: str, flags: int = os.O_RDONLY, mode: int = 0o644, *, in_root: bool = False) -> int:
        """:func:`open_beneath` relative to this tree's root."""
        return open_beneath(self.fd, rel, flags, mode, in_root=in_root)

    def opendir(self, rel: str) -> int:
        """A readable descriptor of the directory ``rel`` (for ``os.listdir`` and ``fchmod``)."""
        return open_beneath(self.fd, rel, os.O_RDONLY | os.O_DIRECTORY)

    def parent(self, rel: str) -> tuple[int, str]:
        """``(descriptor of rel's directory, rel's last component)``; the caller closes the fd.

        For operations on an entry itself (``lstat``, ``readlink``, ``unlink``, ``symlink``)
        relative to a parent resolved without symlinks.
        """
        parts = _components(rel)
        if not parts:
            raise OSError(errno.EINVAL, "the tree root has no parent inside the tree", rel)
        return open_beneath(self.fd, "/".join(parts[:-1]), os.O_PATH | os.O_DIRECTORY), parts[-1]

    def lstat(self, rel: str) -> os.stat_result | None:
        """The entry's own status, or ``None`` when it (or a directory above it) is missing.

        Raises:
            OSError: ``ELOOP`` when a directory above it is a symlink.
        """
        if not _components(rel):
            return os.fstat(self.fd)
        try:
            pfd, name = self.parent(rel)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(pfd)

    def readlink(self, rel: str) -> str:
        """The target of the symlink ``rel``."""
        pfd, name = self.parent(rel)
        try:
            return os.readlink(name, dir_fd=pfd)
        finally:
            os.close(pfd)

    def listdir(self, rel: str = "") -> list[str]:
        """The names in directory ``rel``, sorted by their bytes (ostree's order)."""
        fd = self.opendir(rel)
        try:
            return sorted(os.listdir(fd), key=os.fsencode)
        finally:
            os.close(fd)

    def read_bytes(self, rel: str, *, in_root: bool = False, limit: int | None = None) -> bytes:
        """The contents of the regular file ``rel`` (at most ``limit`` bytes when given).

        Raises:
            OSError: ``EISDIR``/``EINVAL`` for a non-regular file, and see :func:`open_beneath`.
        """
        fd = self.open(rel, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK, in_root=in_root)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", rel)
            if limit is None:
                chunks = []
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
                return b"".join(chunks)
            return os.read(fd, limit)
        finally:
            os.close(fd)
