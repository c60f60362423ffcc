"""Turning a directory into content, dirtree and dirmeta objects (archives: :mod:`.archive`).

Layer: repo. The work is split so that both cores are busy: the walking thread reads directory
entries and metadata, a thread pool reads, hashes and (for new objects only) compresses and
writes file contents. hashlib and zlib release the GIL, so the pool runs in parallel.

"Hash first": a file's checksum is computed before anything is written, and an object that is
already in the repository is never compressed or written again. That is what makes committing
v2 on top of v1 cheap: only the changed files cost more than a read and a hash.

Files up to :data:`SMALL_FILE` bytes are read once into memory; larger ones are streamed twice
(hash, then write), so memory stays flat whatever the size of the tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bootree import _fs
from bootree.errors import FormatError, RepoError, SourceError
from bootree.format.checksum import Checksum
from bootree.format.objects import DirMeta, FileHeader, ObjectType, Xattrs, validate_filename
from bootree.format.verified import VerifiedContent
from bootree.repo.commitrules import PathnameFilter, PathRules
from bootree.repo.modes import RepoMode
from bootree.repo.mtree import MutableTree
from bootree.repo.objectstore import CHUNK
from bootree.repo.transaction import Transaction

__all__ = ["SMALL_FILE", "CommitOptions", "SourceKind", "TreeSource", "write_directory"]

#: Files up to this size are read into memory once; larger ones are streamed.
SMALL_FILE = 8 << 20

#: Called with the number of files processed and bytes read so far.
ProgressFn = Callable[[int, int], None]


class SourceKind(StrEnum):
    """What a ``--tree=KIND=VALUE`` names."""

    DIR = "dir"
    TAR = "tar"
    REF = "ref"
    BASE = "base"
    """``commit --base=REV``: a ref whose tree the owner/xattr options leave as it is."""


@dataclass(frozen=True, slots=True)
class TreeSource:
    """One ``--tree=KIND=VALUE`` of a commit: ``dir`` (a directory), ``tar`` or ``ref``."""

    kind: SourceKind
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SourceKind(self.kind))

    @classmethod
    def parse(cls, spec: str) -> TreeSource:
        """Parse ``dir=PATH``, ``tar=PATH`` or ``ref=REV``.

        Raises:
            RepoError: for an unknown kind.
        """
        kind, sep, value = spec.partition("=")
        if not sep or kind not in ("dir", "tar", "ref") or not value:
            raise RepoError(f"invalid tree source {spec!r}: expected dir=PATH, tar=PATH or ref=REV")
        return cls(SourceKind(kind), value)


@dataclass(frozen=True, slots=True)
class CommitOptions:
    """How source metadata is mapped into objects (ostree's commit modifiers)."""

    owner_uid: int | None = None
    owner_gid: int | None = None
    no_xattrs: bool = False
    canonical_permissions: bool = False
    workers: int = 0
    """Threads for hashing and compression; 0 means one per core."""
    ro_executables: bool = False
    """ostree's ``--mode-ro-executables``: a regular file with an x bit loses its w bits."""
    path_rules: PathRules | None = None
    """``--statoverride`` and ``--skip-list`` (directory and archive sources)."""
    tar_autocreate_parents: bool = False
    tar_pathname_filter: PathnameFilter | None = None
    adopt: bool = False
    """``--consume``: the caller gives the files up, so they may become objects themselves."""

    def file_header(self, uid: int, gid: int, mode: int, target: str, xattrs: Xattrs) -> FileHeader:
        """Apply the modifiers to a file's metadata."""
        if self.ro_executables and stat.S_ISREG(mode) and mode & 0o111:
            mode &= ~0o222
        if self.canonical_permissions:
            uid = gid = 0
            mode = stat.S_IFMT(mode) | (mode & 0o755) if not stat.S_ISLNK(mode) else stat.S_IFLNK | 0o777
            xattrs = ()
        if self.owner_uid is not None:
            uid = self.owner_uid
        if self.owner_gid is not None:
            gid = self.owner_gid
        if self.no_xattrs:
            xattrs = ()
        return FileHeader(uid, gid, mode, 0, target, xattrs)

    def dir_meta(self, uid: int, gid: int, mode: int, xattrs: Xattrs) -> DirMeta:
        """Apply the modifiers to a directory's metadata."""
        mode = stat.S_IFDIR | (mode & 0o7777)
        if self.canonical_permissions:
            uid = gid = 0
            mode = stat.S_IFDIR | (mode & 0o755)
            xattrs = ()
        if self.owner_uid is not None:
            uid = self.owner_uid
        if self.owner_gid is not None:
            gid = self.owner_gid
        if self.no_xattrs:
            xattrs = ()
        return DirMeta(uid, gid, mode, xattrs)

    @property
    def modifies_metadata(self) -> bool:
        """Whether these options change the metadata of what they import."""
        return (
            self.owner_uid is not None or self.owner_gid is not None or self.no_xattrs or self.canonical_permissions
            or self.ro_executables
        )

    @property
    def pool_size(self) -> int:
        """Number of worker threads to use."""
        return self.workers or max(2, os.cpu_count() or 2)


def _adopt_regular(txn: Transaction, path: str, header: FileHeader) -> Checksum | None:
    """``--consume`` in a bare or bare-user-only repository: hash the file and make it the object.

    Returns None when it cannot be adopted (it is then written as usual).
    """
    try:
        with open(path, "rb", buffering=0) as f:
            hasher = hashlib.sha256(header.checksum_prefix())
            for chunk in iter(lambda: f.read(CHUNK), b""):
                hasher.update(chunk)
            csum = Checksum(hasher.hexdigest())
            if txn.has_object_indexed(ObjectType.FILE, csum):
                return csum  # the consumed file is deleted with its directory
            if txn.mode is RepoMode.BARE_USER_ONLY:
                os.fchmod(f.fileno(), stat.S_IMODE(header.mode))  # the canonical permissions
        return csum if txn.adopt_file(path, csum) else None
    except OSError as e:
        raise SourceError(path, e.strerror or str(e)) from e


def _write_regular(txn: Transaction, path: str, header: FileHeader, size: int, *, adopt: bool = False) -> Checksum:
    """Hash a regular file and store it unless an identical object exists. Runs in the pool."""
    if adopt:
        adopted = _adopt_regular(txn, path, header)
        if adopted is not None:
            return adopted
    try:
        with open(path, "rb", buffering=0) as f:
            if size <= SMALL_FILE:
                data = f.read(size + 1)
                if len(data) != size:
                    raise SourceError(path, "file changed size while being committed")
                obj = VerifiedContent.of(header, data)
                if not txn.has_object_indexed(ObjectType.FILE, obj.checksum):
                    txn.write_content(obj)
                return obj.checksum
            hasher = hashlib.sha256(header.checksum_prefix())
            for chunk in iter(lambda: f.read(CHUNK), b""):
                hasher.update(chunk)
            csum = Checksum(hasher.hexdigest())
            if txn.has_object_indexed(ObjectType.FILE, csum):
                return csum
            f.seek(0)
            # Hashed again while written: the file may have changed since the first pass.
            with txn.content_writer(header, size, expected=csum) as w:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    w.write(chunk)
                return w.finish()
    except OSError as e:
        raise SourceError(path, e.strerror or str(e)) from e


#: A pool task: several small files ``(path, uid, gid, mode, size)``, so that thread hand-offs
#: cost less than the work. Workers read the xattrs and build the headers themselves.
_Batch = list[tuple[str, int, int, int, int]]
_BATCH_FILES = 48
_BATCH_BYTES = 4 << 20


def _write_batch(txn: Transaction, batch: _Batch, options: CommitOptions, adopt: bool) -> list[Checksum]:
    out = []
    for path, uid, gid, mode, size in batch:
        header = options.file_header(uid, gid, mode, "", _xattrs_of(path, options))
        out.append(_write_regular(txn, path, header, size, adopt=adopt))
    return out


def _can_adopt(txn: Transaction, options: CommitOptions) -> bool:
    """ostree's rule: a consumed file becomes its object in a bare repository when nothing
    changes its metadata, and always in bare-user-only (its permissions made canonical)."""
    if not options.adopt or options.path_rules is not None:
        return False
    if txn.mode is RepoMode.BARE_USER_ONLY:
        return True
    return txn.mode is RepoMode.BARE and not options.modifies_metadata


def _xattrs_of(path: str, options: CommitOptions) -> Xattrs:
    if options.no_xattrs or options.canonical_permissions:
        return ()
    try:
        return _fs.list_xattrs(path)
    except OSError as e:
        raise SourceError(path, e.strerror or str(e)) from e


def _with_mode(s: os.stat_result, mode: int) -> os.stat_result:
    """``s`` with another ``st_mode`` (a statoverride rule's result)."""
    fields = list(s)
    fields[stat.ST_MODE] = mode
    return os.stat_result(fields)


def write_directory(
    txn: Transaction,
    src: Path,
    into: MutableTree,
    options: CommitOptions,
    *,
    progress: ProgressFn | None = None,
    skip_dir: Path | None = None,
) -> None:
    """Add the contents of directory ``src`` to ``into`` (its metadata becomes the root's).

    ``skip_dir`` (the repository itself, when it lies inside the tree) is left out.

    The walking thread batches regular files into pool tasks; files hardlinked to each other
    (same inode, same metadata) are read once.

    Raises:
        SourceError: for an unreadable entry or an unsupported file type (device, fifo, socket).
    """
    try:
        st = os.lstat(src)
    except OSError as e:
        raise SourceError(os.fspath(src), e.strerror or str(e)) from e
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError(os.fspath(src), "not a directory")
    InodeKey = tuple[int, int]
    pending: list[tuple[list[tuple[MutableTree, str, InodeKey | None]], Future[list[Checksum]]]] = []
    aliases: list[tuple[MutableTree, str, InodeKey]] = []
    seen_inodes: set[InodeKey] = set()
    meta_cache: dict[DirMeta, Checksum] = {}
    batch: _Batch = []
    targets: list[tuple[MutableTree, str, InodeKey | None]] = []
    batch_bytes = 0
    total_files = 0
    total_bytes = 0

    rules = options.path_rules
    adopt = _can_adopt(txn, options)
    base_len = len(os.fspath(src).rstrip("/"))  # an entry's path in the commit: path[base_len:]

    def xattrs_of(path: str) -> Xattrs:
        return _xattrs_of(path, options)

    def dirmeta_of(path: str, s: os.stat_result) -> Checksum:
        meta = options.dir_meta(s.st_uid, s.st_gid, s.st_mode, xattrs_of(path))
        csum = meta_cache.get(meta)
        if csum is None:
            csum = meta_cache[meta] = txn.write_dirmeta(meta)
        return csum

    from concurrent.futures import ThreadPoolExecutor  # here: most commands never commit

    with ThreadPoolExecutor(options.pool_size, thread_name_prefix="bootree-commit") as pool:

        def flush() -> None:
            nonlocal batch, targets, batch_bytes
            if batch:
                pending.append((targets, pool.submit(_write_batch, txn, batch, options, adopt)))
                batch, targets, batch_bytes = [], [], 0

        # The repository's own directory, when it lies inside the tree, is not content: its
        # staging files change while they are read (ostree commits them anyway).
        repo_dir: InodeKey | None = None
        if skip_dir is not None:
            with contextlib.suppress(OSError):
                rs = os.stat(skip_dir)
                repo_dir = (rs.st_dev, rs.st_ino)
        try:
            into.meta = dirmeta_of(os.fspath(src), st)
            stack: list[tuple[str, MutableTree]] = [(os.fspath(src), into)]
            while stack:
                dirpath, node = stack.pop()
                try:
                    entries = list(os.scandir(dirpath))
                except OSError as e:
                    raise SourceError(dirpath, e.strerror or str(e)) from e
                for entry in entries:
                    name = entry.name
                    path = entry.path
                    try:
                        validate_filename(name)
                        es = entry.stat(follow_symlinks=False)
                    except OSError as e:
                        raise SourceError(path, e.strerror or str(e)) from e
                    except FormatError as e:
                        raise SourceError(path, str(e)) from e
                    mode = es.st_mode
                    ruled = False
                    if rules is not None:
                        rel = path[base_len:]
                        if rules.skipped(rel):
                            continue
                        ruled = (new_mode := rules.mode(rel, mode)) != mode
                        if ruled:
                            mode = new_mode
                            es = _with_mode(es, mode)
                    if stat.S_ISREG(mode):
                        node.files[name] = Checksum("")  # placeholder keeps the name; filled below
                        node.dirs.pop(name, None)
                        key: InodeKey | None = None
                        if es.st_nlink > 1 and not ruled:
                            # One inode: one content, owner, mode and set of xattrs.
                            key = (es.st_dev, es.st_ino)
                            if key in seen_inodes:
                                aliases.append((node, name, key))
                                continue
                            seen_inodes.add(key)
                        batch.append((path, es.st_uid, es.st_gid, mode, es.st_size))
                        targets.append((node, name, key))
                        batch_bytes += es.st_size
                        total_files += 1
                        total_bytes += es.st_size
                        if len(batch) >= _BATCH_FILES or batch_bytes >= _BATCH_BYTES:
                            flush()
                    elif stat.S_ISDIR(mode):
                        if (es.st_dev, es.st_ino) == repo_dir:
                            continue
                        sub = node.ensure_dir(name)
                        sub.meta = dirmeta_of(path, es)
                        stack.append((path, sub))
                    elif stat.S_ISLNK(mode):
                        try:
                            target = os.readlink(path)
                        except OSError as e:
                            raise SourceError(path, e.strerror or str(e)) from e
                        header = options.file_header(es.st_uid, es.st_gid, mode, target, xattrs_of(path))
                        node.set_file(name, txn.write_file(header, None))
                    else:
                        raise SourceError(path, "unsupported file type (device, fifo or socket)")
            flush()
            by_inode: dict[InodeKey, Checksum] = {}
            done_files = 0
            for batch_targets, fut in pending:
                for (node, name, key), csum in zip(batch_targets, fut.result(), strict=True):
                    node.files[name] = csum
                    if key is not None:
                        by_inode[key] = csum
                done_files += len(batch_targets)
                if progress is not None:
                    progress(done_files, total_bytes)
            for node, name, key in aliases:
                node.files[name] = by_inode[key]
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            raise
    if progress is not None:
        progress(total_files, total_bytes)
