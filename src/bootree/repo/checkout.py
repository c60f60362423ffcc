"""Checking a commit out into a directory: hardlinks from bare-family repos, copies otherwise.

Layer: repo. Every path is created relative to an open directory descriptor, and directories
are opened with ``O_NOFOLLOW``, so neither a symlink in the tree nor one already present in the
destination (``--union``) can make the checkout write outside its destination.

Directories are created ``0700`` and get their final mode and owner after their contents, so
read-only directories (``0555``) can still be filled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from bootree import _fs
from bootree.errors import CheckoutError, CorruptObject, FormatError, ObjectMissing
from bootree.format.checksum import Checksum
from bootree.format.content import BARE_USER_XATTR
from bootree.format.objects import FileHeader, ObjectType
from bootree.repo.checkout_split import split_allowed, split_checkout
from bootree.repo.modes import RepoMode
from bootree.repo.objectstore import CHUNK
from bootree.repo.reader import EntryKind, ObjectReader

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["WHITEOUT_PREFIX", "CheckoutMode", "CheckoutOptions", "checkout_commit", "checkout_tree", "links_files", "require_hardlink_checkout"]

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
    require_hardlinks: bool = False
    """``-H``: a file that cannot be hardlinked (another device) fails the checkout, as ostree's."""
    whiteouts: bool = False
    """ostree's ``--process-passthrough-whiteouts`` (deployments always): a regular file
    ``.ostree-wh.NAME`` becomes the overlayfs whiteout ``NAME``, a character device 0:0 with the
    file's mode and owner, which no repository can store itself."""


#: The name prefix of ostree's whiteout passthrough markers.
WHITEOUT_PREFIX = ".ostree-wh."


class _Checkout:
    def __init__(self, reader: ObjectReader, options: CheckoutOptions, pool: ThreadPoolExecutor | None) -> None:
        self.reader = reader
        self.store = reader.store
        self.opts = options
        self.pool = pool
        self.futures: list[Future[None]] = []
        mode = reader.mode
        self.hardlink = links_files(mode, options)
        self.bare_user = mode is RepoMode.BARE_USER
        self.files = 0
        self.completed: list[tuple[int, Checksum]] = []
        self._objects_dirfd: int | None = None
        # Directories whose owner is known to be (euid, egid) without asking: created here by
        # mkdir in a parent without the setgid bit whose group is egid (every directory stays
        # 0700 until its children exist). Their fchown is skipped when the dirmeta asks for that
        # owner: one system call fewer per directory (1,600 per deploy of the corpus).
        self._euid, self._egid = os.geteuid(), os.getegid()
        self._owned: set[int] = set()
        self._clean_root: int | None = None

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
        if self.hardlink and not (self.bare_user and self._is_bare_user_symlink(csum)):
            src = self.store.path_str(ObjectType.FILE, csum)
            try:
                os.link(src, name, dst_dir_fd=dfd, follow_symlinks=False)
                return
            except FileNotFoundError:
                if self.store.parent is None:
                    raise ObjectMissing(csum, "file") from None
                # In the parent repository ([core] parent): copied below.
            except FileExistsError:
                self._remove_existing(dfd, name, relpath)
                try:
                    os.link(src, name, dst_dir_fd=dfd, follow_symlinks=False)
                    return
                except OSError as e:
                    if e.errno not in (errno.EMLINK, errno.EXDEV):
                        raise
            except OSError as e:
                if e.errno == errno.EXDEV and self.opts.require_hardlinks:
                    raise CheckoutError(relpath, f"Unable to do hardlink checkout across devices (src={src} destination={name})") from None
                if e.errno not in (errno.EMLINK, errno.EXDEV, errno.EPERM):
                    raise
            # Too many links, another filesystem or a protected object: copy instead.
        if self.pool is not None:
            self.futures.append(self.pool.submit(self._copy, dfd, name, csum, relpath))
        else:
            self._copy(dfd, name, csum, relpath)

    def _whiteouts(self, dfd: int, files: tuple[tuple[str, Checksum], ...], relpath: str) -> tuple[tuple[str, Checksum], ...]:
        """Make the whiteouts of ``.ostree-wh.NAME`` markers (see ``whiteouts``); the other files."""
        rest = []
        for name, csum in files:
            target = name[len(WHITEOUT_PREFIX) :] if name.startswith(WHITEOUT_PREFIX) else ""
            if not target:
                rest.append((name, csum))
                continue
            content = self.store.open_file(csum)
            header = content.header
            if content.stream is not None:
                content.stream.close()
            if header.is_symlink:
                raise CheckoutError(f"{relpath}/{name}", "a whiteout marker must be a regular file")
            try:
                os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=dfd)
            except FileExistsError:
                self._remove_existing(dfd, target, f"{relpath}/{target}")
                os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=dfd)
            if not self.opts.user_mode:
                os.chown(target, header.uid, header.gid, dir_fd=dfd, follow_symlinks=False)
            os.chmod(target, header.mode & (0o1777 if self.opts.user_mode else 0o7777), dir_fd=dfd)
        return tuple(rest)

    def link_files(self, dfd: int, files: tuple[tuple[str, Checksum], ...], relpath: str) -> None:
        """:meth:`file` for a whole directory of hardlinks: the common case, kept tight.

        A deployment is thousands of these; anything but a plain successful ``link`` (a
        bare-user symlink, an existing name, a missing object, too many links) goes through
        :meth:`file`, which knows every case.
        """
        if self.opts.whiteouts:
            files = self._whiteouts(dfd, files, relpath)
        objects = self.store.objects_str
        objects_fd = self._objects_fd()
        bare_user = self.bare_user
        link, getxattr = os.link, os.getxattr
        for name, csum in files:
            rel = f"{csum[:2]}/{csum[2:]}.file"
            if bare_user:
                try:
                    raw = getxattr(f"{objects}/{rel}", BARE_USER_XATTR, follow_symlinks=False)
                except OSError:
                    self.file(dfd, name, csum, f"{relpath}/{name}")
                    continue
                if len(raw) < 12 or _meta_is_symlink(raw):  # a symlink, or odd: the general path
                    self.file(dfd, name, csum, f"{relpath}/{name}")
                    continue
            try:
                link(rel, name, src_dir_fd=objects_fd, dst_dir_fd=dfd, follow_symlinks=False)
            except OSError:
                self.file(dfd, name, csum, f"{relpath}/{name}")

    def _objects_fd(self) -> int:
        """``objects/``, opened once: links name their source relative to it (shorter lookups)."""
        if self._objects_dirfd is None:
            self._objects_dirfd = os.open(self.store.objects_str, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._objects_dirfd

    def _is_bare_user_symlink(self, csum: Checksum) -> bool:
        """bare-user stores symlinks as regular files; only their xattr tells them apart."""
        path = self.store.path_str(ObjectType.FILE, csum)
        try:
            raw = os.getxattr(path, BARE_USER_XATTR, follow_symlinks=False)
        except FileNotFoundError:
            raise ObjectMissing(csum, "file") from None
        except OSError as e:
            raise CorruptObject(csum, "file", f"cannot read {BARE_USER_XATTR}: {e.strerror}") from e
        return _meta_is_symlink(raw)

    def _copy(self, dfd: int, name: str, csum: Checksum, relpath: str) -> None:
        content = self.store.open_file(csum)
        header, stream = content.header, content.stream
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
                        view = view[_fs.write(fd, view) :]
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

    def note_root(self, dfd: int) -> None:
        """Let directories created right under ``dfd`` count as owned by (euid, egid) when they
        must be: ``dfd`` has no setgid bit and its group is egid (so even a ``grpid`` mount gives
        them egid)."""
        st = os.fstat(dfd)
        if not st.st_mode & stat.S_ISGID and st.st_gid == self._egid:
            self._clean_root = dfd

    def open_subdir(self, dfd: int, name: str, relpath: str) -> int:
        fresh = True
        try:
            os.mkdir(name, 0o700, dir_fd=dfd)
        except FileExistsError:
            if not self.opts.union:
                raise CheckoutError(relpath, "already exists in the destination") from None
            fresh = False
        try:
            sfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            if fresh and (dfd in self._owned or dfd == self._clean_root):
                self._owned.add(sfd)
            return sfd
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise CheckoutError(
                    relpath, "is a symlink or file in the destination; refusing to write through it "
                    "(it could escape the destination)"
                ) from e
            raise

    def finish_dir(self, dfd: int, meta_csum: Checksum) -> None:
        meta = self.reader.read_dirmeta(meta_csum)
        owned = dfd in self._owned
        self._owned.discard(dfd)  # the descriptor is closed next: its number will be reused
        if not self.opts.user_mode:
            if not (owned and meta.uid == self._euid and meta.gid == self._egid):
                os.fchown(dfd, meta.uid, meta.gid)
            for xname, value in meta.xattrs:
                os.setxattr(dfd, xname, value)
            os.fchmod(dfd, meta.mode & 0o7777)
        else:
            os.fchmod(dfd, meta.mode & 0o1777)

    def tree(self, dfd: int, tree: Checksum, relpath: str) -> None:
        """Fill ``dfd`` from ``tree``; finished subdirectories are queued in ``self.completed``.

        Depth-first over an explicit stack of open directories (not recursion: a commit can be
        deeper than Python's recursion limit); a directory is queued for its metadata once
        everything below it is written, so read-only directories can still be filled.
        """
        frames: list[tuple[int, Checksum | None, Iterator[tuple[str, Checksum, Checksum]], str]] = [
            (dfd, None, self._fill(dfd, tree, relpath), relpath)
        ]
        try:
            while frames:
                fd, meta, subdirs, rel = frames[-1]
                nxt = next(subdirs, None)
                if nxt is None:
                    frames.pop()
                    if meta is not None:  # the caller finishes ``dfd`` itself
                        self.completed.append((fd, meta))
                        if len(self.completed) >= _MAX_OPEN_DIRS:
                            self.flush()
                    continue
                name, sub_tree, sub_meta = nxt
                sub_rel = f"{rel}/{name}"
                sfd = self.open_subdir(fd, name, sub_rel)
                frames.append((sfd, sub_meta, iter(()), sub_rel))  # owned by ``frames`` from here
                frames[-1] = (sfd, sub_meta, self._fill(sfd, sub_tree, sub_rel), sub_rel)
        except BaseException:
            for fd, meta, _, _ in frames:
                if meta is not None:
                    self._owned.discard(fd)
                    os.close(fd)
            raise

    def _fill(self, dfd: int, tree: Checksum, relpath: str) -> Iterator[tuple[str, Checksum, Checksum]]:
        """Write the files of ``tree`` into ``dfd``; return its subdirectories to descend into."""
        dt = self.reader.read_dirtree(tree)
        self.files += len(dt.files)
        if self.hardlink:
            # In this thread: handing directories to a worker was measured 1.5x slower (the
            # work is a few microseconds of Python per file; the GIL hand-offs cost more).
            self.link_files(dfd, dt.files, relpath)
        else:
            files = self._whiteouts(dfd, dt.files, relpath) if self.opts.whiteouts else dt.files
            for name, csum in files:
                self.file(dfd, name, csum, f"{relpath}/{name}")
        return iter(dt.dirs)

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
        self._owned.clear()
        if self._objects_dirfd is not None:
            os.close(self._objects_dirfd)
            self._objects_dirfd = None


def links_files(mode: RepoMode, options: CheckoutOptions) -> bool:
    """Whether a checkout from a ``mode`` repository hardlinks its files (the hardlink rule).

    Only where the object file *is* the checked-out file: never from archive (compressed) or
    with :attr:`CheckoutMode.COPY`; from bare-user only in user mode (the owner and mode live
    in an xattr, not on the object); from bare only as root and not in user mode (objects carry
    their real owners, which only root may hand out, and -U files must belong to the caller, so
    ostree copies there); from bare-user-only always. Otherwise files are
    copied (also per file, when a link fails with too many links or across filesystems).
    """
    if options.mode is CheckoutMode.COPY or mode is RepoMode.ARCHIVE:
        return False
    if mode is RepoMode.BARE_USER:
        return options.user_mode
    if mode is RepoMode.BARE:
        # As ostree: a user-mode (-U) checkout of a bare repository copies, since its objects
        # carry their commit's owners and -U files must belong to the caller.
        return not options.user_mode and os.geteuid() == 0
    return True


def require_hardlink_checkout(mode: RepoMode, options: CheckoutOptions, dest: str, repo_root: str | None = None) -> None:
    """``checkout -H``: refuse up front a checkout that would copy instead of linking.

    As ostree, a destination on another device than ``repo_root`` is refused first.

    Raises:
        CheckoutError: naming what prevents hardlinks.
    """
    if repo_root is not None:
        where = dest if os.path.lexists(dest) else os.path.dirname(os.path.abspath(dest))
        with contextlib.suppress(OSError):
            src_dev, dest_dev = os.stat(repo_root).st_dev, os.stat(where).st_dev
            if src_dev != dest_dev:
                raise CheckoutError(dest, f"Unable to do hardlink checkout across devices (src={src_dev} destination={dest_dev})")
    if links_files(mode, options):
        return
    if options.mode is CheckoutMode.COPY:
        why = "copies were asked for"
    elif mode is RepoMode.ARCHIVE:
        why = "from an archive repository"
    elif mode is RepoMode.BARE_USER:
        # ostree's wording (its test suite looks for it).
        why = "from a bare-user repository: User repository mode requires user checkout mode to hardlink (-U)"
    elif options.user_mode:
        why = f"from a {mode.value} repository with -U (its objects carry their commits' owners)"
    else:
        why = f"from a {mode.value} repository as non-root"
    raise CheckoutError(dest, f"hardlink checkout is not possible {why}")


def _meta_is_symlink(raw: bytes) -> bool:
    """Whether a ``user.ostreemeta`` value ``(uuua(ayay))`` is a symlink's: the mode is the
    third big-endian u32 (a value too short to hold it is not)."""
    return len(raw) >= 12 and stat.S_ISLNK(int.from_bytes(raw[8:12], "big"))


def checkout_commit(
    reader: ObjectReader,
    rev: Checksum,
    dest: Path,
    options: CheckoutOptions,
    *,
    subpath: str | None = None,
) -> int:
    """Check the commit ``rev`` (or its ``subpath``: a directory or one file) out to ``dest``; files written.

    ``dest`` is created unless ``options.union`` lets it exist; a directory this call created is
    removed again if the checkout fails, so a failed checkout leaves nothing half-written behind.

    Raises:
        CheckoutError: if ``dest`` exists (without union), ``subpath`` is not in the commit, or
            the checkout would escape ``dest``.
        ObjectMissing, CorruptObject: for a damaged repository.
    """
    commit = reader.read_commit(rev)
    tree, meta = commit.root_tree, commit.root_meta
    if subpath and subpath.strip("/"):
        try:
            entry = reader.lookup(commit, subpath)
        except FormatError as e:
            raise CheckoutError(subpath, str(e)) from e
        if entry is None:
            raise CheckoutError(subpath, f"no such path in commit {rev}")
        if entry.kind is EntryKind.FILE:
            return _checkout_one_file(reader, entry.checksum, dest, options)
        assert entry.meta is not None
        tree, meta = entry.checksum, entry.meta
    created = False
    try:
        os.mkdir(dest, 0o700)
        created = True
    except FileExistsError:
        if not options.union:
            raise CheckoutError(os.fspath(dest), "destination already exists (use --union to merge)") from None
    try:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CheckoutError(os.fspath(dest), e.strerror or str(e)) from e
    try:
        return checkout_tree(reader, tree, meta, fd, options=options)
    except BaseException:
        if created:
            os.close(fd)
            fd = -1
            _fs.rmtree(dest)
        raise
    finally:
        if fd >= 0:
            os.close(fd)


def _checkout_one_file(reader: ObjectReader, csum: Checksum, dest: Path, options: CheckoutOptions) -> int:
    fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _Checkout(reader, options, None).file(fd, dest.name, csum, os.fspath(dest))
    finally:
        os.close(fd)
    return 1


def checkout_tree(
    reader: ObjectReader,
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
    if reader.mode is RepoMode.ARCHIVE or options.mode is CheckoutMode.COPY:
        from concurrent.futures import ThreadPoolExecutor  # here: a hardlink checkout needs no pool

        pool = ThreadPoolExecutor(options.workers or max(2, os.cpu_count() or 2), thread_name_prefix="bootree-co")
    co = _Checkout(reader, options, pool)
    try:
        co.note_root(dest_dir_fd)
        if co.hardlink and split_allowed(options):
            split_checkout(co, dest_dir_fd, tree)
        else:
            co.tree(dest_dir_fd, tree, "")
        co.flush()
        co.finish_dir(dest_dir_fd, meta)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        co.close_all()
    return co.files
