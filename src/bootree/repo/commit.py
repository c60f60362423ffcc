"""Turning a directory or a tar archive into content, dirtree and dirmeta objects.

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
    import tarfile
    from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bootree import _fs
from bootree.errors import BootreeError, FormatError, RepoError, SourceError
from bootree.format.checksum import Checksum
from bootree.format.objects import DirMeta, FileHeader, ObjectType, Xattrs, validate_filename
from bootree.format.verified import VerifiedContent
from bootree.repo.mtree import MutableTree
from bootree.repo.objectstore import CHUNK
from bootree.repo.transaction import Transaction

__all__ = ["SMALL_FILE", "CommitOptions", "SourceKind", "TreeSource", "write_directory", "write_tar"]

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
    mode_adds: tuple[tuple[str, int], ...] = ()
    """``--statoverride``: mode bits OR-ed into the entry at each path (``/a/b``) of a
    directory source, as ostree's statoverride file gives them (see :func:`parse_statoverride`)."""

    def mode_add(self, path: str) -> int:
        """The bits ``--statoverride`` adds to the entry at ``path`` (0: none)."""
        for p, bits in self.mode_adds:
            if p == path:
                return bits
        return 0

    def file_header(self, uid: int, gid: int, mode: int, target: str, xattrs: Xattrs) -> FileHeader:
        """Apply the modifiers to a file's metadata."""
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
        )

    @property
    def pool_size(self) -> int:
        """Number of worker threads to use."""
        return self.workers or max(2, os.cpu_count() or 2)


def parse_statoverride(text: str) -> tuple[tuple[str, int], ...]:
    """An ostree statoverride file: ``MODE PATH`` a line, MODE the decimal bits to add.

    Raises:
        RepoError: for a line that is not ``MODE PATH``.
    """
    out: list[tuple[str, int]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        bits, sep, path = line.partition(" ")
        try:
            value = int(bits.lstrip("+"))
        except ValueError:
            value = -1
        if not sep or value < 0 or value > 0o7777 or not path.startswith("/"):
            raise RepoError(f"statoverride line {n}: expected 'MODE /PATH' (decimal mode bits), got {line[:80]!r}")
        out.append(("/" + path.strip("/") if path.strip("/") else "/", value))
    return tuple(out)


def _write_regular(txn: Transaction, path: str, header: FileHeader, size: int) -> Checksum:
    """Hash a regular file and store it unless an identical object exists. Runs in the pool."""
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


def _write_batch(txn: Transaction, batch: _Batch, options: CommitOptions) -> list[Checksum]:
    out = []
    for path, uid, gid, mode, size in batch:
        header = options.file_header(uid, gid, mode, "", _xattrs_of(path, options))
        out.append(_write_regular(txn, path, header, size))
    return out


def _xattrs_of(path: str, options: CommitOptions) -> Xattrs:
    if options.no_xattrs or options.canonical_permissions:
        return ()
    try:
        return _fs.list_xattrs(path)
    except OSError as e:
        raise SourceError(path, e.strerror or str(e)) from e


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

    def xattrs_of(path: str) -> Xattrs:
        return _xattrs_of(path, options)

    root = os.fspath(src)

    def dirmeta_of(path: str, s: os.stat_result, mode: int | None = None) -> Checksum:
        meta = options.dir_meta(s.st_uid, s.st_gid, s.st_mode if mode is None else mode, xattrs_of(path))
        csum = meta_cache.get(meta)
        if csum is None:
            csum = meta_cache[meta] = txn.write_dirmeta(meta)
        return csum

    from concurrent.futures import ThreadPoolExecutor  # here: most commands never commit

    with ThreadPoolExecutor(options.pool_size, thread_name_prefix="bootree-commit") as pool:

        def flush() -> None:
            nonlocal batch, targets, batch_bytes
            if batch:
                pending.append((targets, pool.submit(_write_batch, txn, batch, options)))
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
                    added = options.mode_add("/" + path[len(root):].lstrip("/")) if options.mode_adds else 0
                    mode |= added
                    if stat.S_ISREG(mode):
                        node.files[name] = Checksum("")  # placeholder keeps the name; filled below
                        node.dirs.pop(name, None)
                        key: InodeKey | None = None
                        if es.st_nlink > 1 and not added:  # an overridden mode is not the inode's
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
                        sub.meta = dirmeta_of(path, es, mode)
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


def _tar_path(name: str) -> list[str]:
    """Split a member name into safe components; ``..`` and absolute escapes are refused."""
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise SourceError(name, "tar member path escapes the tree ('..')")
        if "\0" in p:
            raise SourceError(name, "tar member name contains NUL")
        parts.append(p)
    return parts


def _tar_xattrs(member: tarfile.TarInfo, options: CommitOptions) -> Xattrs:
    if options.no_xattrs or options.canonical_permissions:
        return ()
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            raw = value.encode("utf-8", "surrogateescape")
            if raw:
                out.append((key[len("SCHILY.xattr.") :].encode("utf-8", "surrogateescape"), raw))
    return tuple(sorted(out))


def write_tar(
    txn: Transaction,
    tar_path: Path,
    into: MutableTree,
    options: CommitOptions,
    *,
    progress: ProgressFn | None = None,
) -> None:
    """Add the members of a (possibly compressed) tar archive to ``into``.

    Hardlinks reuse the target's object; members whose path would leave the tree are refused.

    Raises:
        SourceError: for an unreadable or corrupt archive, an unsafe path, a hardlink to a
            missing member or an unsupported member type.
    """
    pending: list[tuple[MutableTree, str, Future[Checksum]]] = []
    count = 0
    nbytes = 0
    import tarfile  # here, not at module level: most commits read directories

    try:
        tf = tarfile.open(tar_path, mode="r|*")
    except (OSError, tarfile.TarError) as e:
        raise SourceError(os.fspath(tar_path), str(e)) from e
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(options.pool_size, thread_name_prefix="bootree-tar") as pool:
        try:
            with tf:
                for member in tf:
                    try:
                        member.name.encode("utf-8")
                        member.linkname.encode("utf-8")
                    except UnicodeEncodeError as e:
                        raise SourceError(repr(member.name), "tar member name or link target is not UTF-8") from e
                    parts = _tar_path(member.name)
                    for p in parts:
                        try:
                            validate_filename(p)
                        except BootreeError as e:
                            raise SourceError(member.name, str(e)) from e
                    xattrs = _tar_xattrs(member, options)
                    if member.isdir():
                        node = into.lookup_dir(parts)
                        node.meta = txn.write_dirmeta(options.dir_meta(member.uid, member.gid, member.mode, xattrs))
                        continue
                    if not parts:
                        raise SourceError(member.name, "tar member has an empty name")
                    parent = into.lookup_dir(parts[:-1])
                    name = parts[-1]
                    if member.issym():
                        header = options.file_header(member.uid, member.gid, stat.S_IFLNK | 0o777, member.linkname, xattrs)
                        parent.set_file(name, txn.write_file(header, None))
                    elif member.islnk():
                        # The target is an earlier member; wait for its object if still in the pool.
                        target = _tar_path(member.linkname)
                        csum = _resolve_pending(into, target, pending)
                        if csum is None:
                            raise SourceError(member.name, f"hardlink to missing member {member.linkname!r}")
                        parent.set_file(name, csum)
                    elif member.isreg():
                        header = options.file_header(member.uid, member.gid, stat.S_IFREG | (member.mode & 0o7777), "", xattrs)
                        f = tf.extractfile(member)
                        assert f is not None
                        data = f.read(member.size)
                        if len(data) != member.size:
                            raise SourceError(member.name, "tar archive is truncated")
                        fut = pool.submit(txn.write_file, header, data)
                        parent.set_file(name, Checksum(""))
                        pending.append((parent, name, fut))
                        nbytes += member.size
                    else:
                        raise SourceError(member.name, "unsupported tar member type (device or fifo)")
                    count += 1
                    if progress is not None and count % 256 == 0:
                        progress(count, nbytes)
            for node, name, fut in pending:
                if node.files.get(name) == "":
                    node.files[name] = fut.result()
                else:
                    fut.result()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise SourceError(os.fspath(tar_path), f"cannot read tar archive: {e}") from e
        except BaseException:
            for _, _, fut in pending:
                fut.cancel()
            raise
    if progress is not None:
        progress(count, nbytes)


def _resolve_pending(
    root: MutableTree, parts: list[str], pending: list[tuple[MutableTree, str, Future[Checksum]]]
) -> Checksum | None:
    csum = root.find_file(parts)
    if csum is None:
        return None
    if csum:
        return csum
    # Still being written: find its future (search from the end; hardlinks follow their target).
    node = root
    for p in parts[:-1]:
        node = node.dirs[p]
    for pnode, pname, fut in reversed(pending):
        if pnode is node and pname == parts[-1]:
            result = fut.result()
            node.files[pname] = result
            return result
    return None
