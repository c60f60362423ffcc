"""Checking a commit out into a directory: hardlinks from bare-family repos, copies otherwise.

Layer: repo. Every path is created relative to an open directory descriptor, and directories
are opened with ``O_NOFOLLOW``, so neither a symlink in the tree nor one already present in the
destination (``--union``) can make the checkout write outside its destination.

Directories are created ``0700`` and get their final mode and owner after their contents, so
read-only directories (``0555``) can still be filled.
"""

from __future__ import annotations

import errno
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from bootree.errors import CheckoutError, CorruptObject, ObjectMissing
from bootree.format.checksum import Checksum
from bootree.format.content import BARE_USER_XATTR
from bootree.format.objects import FileHeader, ObjectType
from bootree.repo.modes import RepoMode
from bootree.repo.objectstore import CHUNK

if TYPE_CHECKING:
    from bootree.repo.repo import Repo

__all__ = ["CheckoutMode", "CheckoutOptions", "checkout_tree"]

#: Completed directories kept open before their metadata is applied in one batch.
_MAX_OPEN_DIRS = 256
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CheckoutMode(StrEnum):
    """How file contents reach the destination."""

    HARDLINK = "hardlink"
    """Hardlink objects where the repository mode allows it, copying otherwise."""
    COPY = "copy"
    """Always write new files."""


@dataclass(frozen=True, slots=True)
class CheckoutOptions:
    """Options of :func:`checkout_tree` (ostree's ``checkout`` flags)."""

    mode: CheckoutMode = CheckoutMode.HARDLINK
    user_mode: bool = False
    """Ignore owners and xattrs, drop setuid/setgid bits (``-U``)."""
    union: bool = False
    """Overwrite existing files; merge into existing directories (``--union``)."""
    workers: int = 0


class _Checkout:
    def __init__(self, repo: Repo, options: CheckoutOptions, pool: ThreadPoolExecutor | None) -> None:
        self.repo = repo
        self.store = repo.store
        self.opts = options
        self.pool = pool
        self.futures: list[Future[None]] = []
        mode = repo.mode
        if options.mode is CheckoutMode.COPY or mode is RepoMode.ARCHIVE:
            self.hardlink = False
        elif mode is RepoMode.BARE_USER:
            self.hardlink = options.user_mode
        elif mode is RepoMode.BARE:
            self.hardlink = options.user_mode or os.geteuid() == 0
        else:
            self.hardlink = True
        self.bare_user = mode is RepoMode.BARE_USER
        self.files = 0
        self.completed: list[tuple[int, Checksum]] = []

    # --- files -------------------------------------------------------------------------------

    def _remove_existing(self, dfd: int, name: str, relpath: str) -> None:
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            return
        if not self.opts.union:
            raise CheckoutError(relpath, "already exists in the destination")
        if stat.S_ISDIR(st.st_mode):
            raise CheckoutError(relpath, "is a directory in the destination but a file in the commit")
        os.unlink(name, dir_fd=dfd)

    def file(self, dfd: int, name: str, csum: Checksum, relpath: str) -> None:
        self.files += 1
        if self.hardlink and not (self.bare_user and self._is_bare_user_symlink(csum)):
            src = self.store.path_str(ObjectType.FILE, csum)
            try:
                os.link(src, name, dst_dir_fd=dfd, follow_symlinks=False)
                return
            except FileNotFoundError:
                raise ObjectMissing(csum, "file") from None
            except FileExistsError:
                self._remove_existing(dfd, name, relpath)
                try:
                    os.link(src, name, dst_dir_fd=dfd, follow_symlinks=False)
                    return
                except OSError as e:
                    if e.errno not in (errno.EMLINK, errno.EXDEV):
                        raise
            except OSError as e:
                if e.errno not in (errno.EMLINK, errno.EXDEV, errno.EPERM):
                    raise
            # Too many links, another filesystem or a protected object: copy instead.
        if self.pool is not None:
            self.futures.append(self.pool.submit(self._copy, dfd, name, csum, relpath))
        else:
            self._copy(dfd, name, csum, relpath)

    def _is_bare_user_symlink(self, csum: Checksum) -> bool:
        """bare-user stores symlinks as regular files; only their xattr tells them apart."""
        path = self.store.path_str(ObjectType.FILE, csum)
        try:
            raw = os.getxattr(path, BARE_USER_XATTR, follow_symlinks=False)
        except FileNotFoundError:
            raise ObjectMissing(csum, "file") from None
        except OSError as e:
            raise CorruptObject(csum, "file", f"cannot read {BARE_USER_XATTR}: {e.strerror}") from e
        # (uuua(ayay)): the mode is the third big-endian u32.
        return len(raw) >= 12 and stat.S_ISLNK(int.from_bytes(raw[8:12], "big"))

    def _copy(self, dfd: int, name: str, csum: Checksum, relpath: str) -> None:
        header, stream = self.store.open_file(csum)
        user = self.opts.user_mode
        if header.is_symlink:
            try:
                os.symlink(header.symlink_target, name, dir_fd=dfd)
            except FileExistsError:
                self._remove_existing(dfd, name, relpath)
                os.symlink(header.symlink_target, name, dir_fd=dfd)
            if not user:
                os.chown(name, header.uid, header.gid, dir_fd=dfd, follow_symlinks=False)
                self._set_xattrs_link(dfd, name, header)
            return
        assert stream is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with stream:
            try:
                fd = os.open(name, flags, 0o600, dir_fd=dfd)
            except FileExistsError:
                self._remove_existing(dfd, name, relpath)
                fd = os.open(name, flags, 0o600, dir_fd=dfd)
            try:
                for chunk in iter(lambda: stream.read(CHUNK), b""):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                if user:
                    os.fchmod(fd, header.mode & 0o1777)
                else:
                    os.fchown(fd, header.uid, header.gid)
                    for xname, value in header.xattrs:
                        os.setxattr(fd, xname, value)
                    os.fchmod(fd, header.mode & 0o7777)
            finally:
                os.close(fd)

    @staticmethod
    def _set_xattrs_link(dfd: int, name: str, header: FileHeader) -> None:
        for xname, value in header.xattrs:
            os.setxattr(f"/proc/self/fd/{dfd}/{name}", xname, value, follow_symlinks=False)

    # --- directories ----------------------------------------------------------------------------

    def open_subdir(self, dfd: int, name: str, relpath: str) -> int:
        try:
            os.mkdir(name, 0o700, dir_fd=dfd)
        except FileExistsError:
            if not self.opts.union:
                raise CheckoutError(relpath, "already exists in the destination") from None
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise CheckoutError(
                    relpath, "is a symlink or file in the destination; refusing to write through it "
                    "(it could escape the destination)"
                ) from e
            raise

    def finish_dir(self, dfd: int, meta_csum: Checksum) -> None:
        meta = self.repo.read_dirmeta(meta_csum)
        if not self.opts.user_mode:
            os.fchown(dfd, meta.uid, meta.gid)
            for xname, value in meta.xattrs:
                os.setxattr(dfd, xname, value)
            os.fchmod(dfd, meta.mode & 0o7777)
        else:
            os.fchmod(dfd, meta.mode & 0o1777)

    def tree(self, dfd: int, tree: Checksum, relpath: str) -> None:
        """Fill ``dfd`` from ``tree``; finished subdirectories are queued in ``self.completed``."""
        dt = self.repo.read_dirtree(tree)
        for name, csum in dt.files:
            self.file(dfd, name, csum, f"{relpath}/{name}")
        for name, sub_tree, sub_meta in dt.dirs:
            sub_rel = f"{relpath}/{name}"
            sfd = self.open_subdir(dfd, name, sub_rel)
            try:
                self.tree(sfd, sub_tree, sub_rel)
            except BaseException:
                os.close(sfd)
                raise
            self.completed.append((sfd, sub_meta))
            if len(self.completed) >= _MAX_OPEN_DIRS:
                self.flush()

    def flush(self) -> None:
        """Wait for pending copies, then apply metadata to and close completed directories.

        Bounding the open directories keeps a deep or wide tree under the descriptor limit.
        """
        for fut in self.futures:
            fut.result()
        self.futures.clear()
        while self.completed:
            fd, meta = self.completed.pop(0)
            try:
                self.finish_dir(fd, meta)
            finally:
                os.close(fd)

    def close_all(self) -> None:
        for fd, _ in self.completed:
            os.close(fd)
        self.completed.clear()


def checkout_tree(
    repo: Repo,
    tree: Checksum,
    meta: Checksum,
    dest_dir_fd: int,
    *,
    options: CheckoutOptions,
) -> int:
    """Check a dirtree out into an open, empty (or, with ``union``, existing) directory.

    Directory metadata, including the destination's own, is applied after the contents.
    Returns the number of files written.

    Raises:
        CheckoutError: if the checkout would overwrite something or write through a symlink.
        CorruptObject, ObjectMissing: for a damaged repository.
    """
    pool = None
    if repo.mode is RepoMode.ARCHIVE or options.mode is CheckoutMode.COPY:
        pool = ThreadPoolExecutor(options.workers or max(2, os.cpu_count() or 2), thread_name_prefix="bootree-co")
    co = _Checkout(repo, options, pool)
    try:
        co.tree(dest_dir_fd, tree, "")
        co.flush()
        co.finish_dir(dest_dir_fd, meta)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        co.close_all()
    return co.files
