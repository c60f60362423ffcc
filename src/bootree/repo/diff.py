"""Differences between two trees, as ``ostree diff`` lists them: commits or directories on disk.

Layer: repo. Each side is a commit's tree (read through an :class:`ObjectReader`; identical
subtrees, same dirtree checksum, are skipped without being read) or a directory on disk, whose
files are hashed as a commit would store them (owner, mode, symlink target, xattrs and
content), so that "this checkout still matches its commit" is a checksum comparison. As
ostree: a path whose type changed (file to directory) is one modified entry, the owner
overrides apply to the second side's files on disk, directories compare by their metadata
(a dirmeta checksum) and then by their entries, and a path is printed absolute when it is
in a commit (``/a/b``) and relative when it is on disk (``a/b``: modified and deleted
entries are named by the first side, added ones by the second).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bootree import _fs
from bootree.errors import SourceError
from bootree.format.checksum import Checksum
from bootree.format.objects import DirMeta, FileHeader
from bootree.repo.objectstore import CHUNK
from bootree.repo.reader import ObjectReader

__all__ = ["CommitSide", "DiffEntry", "DiffKind", "DiffOptions", "DirSide", "diff_commits", "diff_trees"]


class DiffKind(StrEnum):
    """How a path differs (the letter ``ostree diff`` prints)."""

    MODIFIED = "M"
    DELETED = "D"
    ADDED = "A"


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One line of ``diff``: ``A`` added, ``D`` deleted or ``M`` modified, and the path."""

    kind: DiffKind
    path: str


@dataclass(frozen=True, slots=True)
class DiffOptions:
    """ostree's ``diff --no-xattrs --owner-uid --owner-gid`` (the owners: for the second side's files on disk)."""

    ignore_xattrs: bool = False
    owner_uid: int | None = None
    owner_gid: int | None = None


@dataclass(frozen=True, slots=True)
class CommitSide:
    """A commit's tree: ``tree`` and ``meta`` of its root."""

    reader: ObjectReader
    tree: Checksum
    meta: Checksum


@dataclass(frozen=True, slots=True)
class DirSide:
    """A directory on disk."""

    path: Path


@dataclass(frozen=True, slots=True)
class _Node:
    """One entry of a directory: its checksum (content object, or dirmeta for a directory)."""

    is_dir: bool
    checksum: Checksum
    tree: Checksum | None = None  # a commit's directory: its dirtree (the fast path)
    path: str | None = None  # a directory on disk


def diff_commits(reader: ObjectReader, a: Checksum, b: Checksum) -> list[DiffEntry]:
    """Differences between the trees of commits ``a`` and ``b`` (see :func:`diff_trees`).

    Raises:
        ObjectMissing, CorruptObject: for a damaged tree.
    """
    ca, cb = reader.read_commit(a), reader.read_commit(b)
    return diff_trees(CommitSide(reader, ca.root_tree, ca.root_meta), CommitSide(reader, cb.root_tree, cb.root_meta))


def diff_trees(a: CommitSide | DirSide, b: CommitSide | DirSide, options: DiffOptions = DiffOptions()) -> list[DiffEntry]:
    """Differences from ``a`` to ``b``: modified, then deleted, then added (ostree's order).

    An added directory is listed with everything below it; a removed one is listed once.

    Raises:
        ObjectMissing, CorruptObject: for a damaged commit tree.
        SourceError: for a directory entry that cannot be read.
    """
    out: list[DiffEntry] = []
    # Depth-first over an explicit stack of per-directory generators, not recursion: a tree
    # can be deeper than Python's recursion limit (issue 10).
    root_a = _root(a)
    root_b = _root(b)
    sides = (a, b)
    stack: list[Iterator[_Step]] = [_diff_level(sides, root_a, root_b, "", options)]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
        elif isinstance(step, DiffEntry):
            out.append(step)
        else:
            stack.append(step)
    return [e for kind in DiffKind for e in out if e.kind is kind]


#: A step of the diff walk: an entry, or the walk of a directory below.
_Step = DiffEntry | Iterator["_Step"]


def _root(side: CommitSide | DirSide) -> _Node:
    if isinstance(side, CommitSide):
        return _Node(True, side.meta, tree=side.tree)
    if not side.path.is_dir():
        raise SourceError(os.fspath(side.path), "not a directory")
    return _Node(True, Checksum(""), path=os.fspath(side.path))


def _children(side: CommitSide | DirSide, node: _Node, options: DiffOptions, *, target: bool) -> dict[str, _Node]:
    if isinstance(side, CommitSide):
        assert node.tree is not None
        dt = side.reader.read_dirtree(node.tree)
        out = {name: _Node(False, csum) for name, csum in dt.files}
        out.update((name, _Node(True, meta, tree=tree)) for name, tree, meta in dt.dirs)
        return out
    assert node.path is not None
    return _disk_children(node.path, options, target=target)


def _disk_children(path: str, options: DiffOptions, *, target: bool) -> dict[str, _Node]:
    """A directory's entries, hashed as a commit would store them."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as e:
        raise SourceError(path, e.strerror or str(e)) from e
    out: dict[str, _Node] = {}
    for entry in entries:
        p = entry.path
        try:
            st = entry.stat(follow_symlinks=False)
            xattrs = () if options.ignore_xattrs else _fs.list_xattrs(p)
        except OSError as e:
            raise SourceError(p, e.strerror or str(e)) from e
        uid, gid = st.st_uid, st.st_gid
        if target:
            uid = options.owner_uid if options.owner_uid is not None else uid
            gid = options.owner_gid if options.owner_gid is not None else gid
        if stat.S_ISDIR(st.st_mode):
            meta = DirMeta(uid, gid, stat.S_IFDIR | stat.S_IMODE(st.st_mode), xattrs)
            out[entry.name] = _Node(True, Checksum(hashlib.sha256(meta.to_bytes()).hexdigest()), path=p)
        else:
            out[entry.name] = _Node(False, _file_checksum(p, st, uid, gid, xattrs))
    return out


def _file_checksum(path: str, st: os.stat_result, uid: int, gid: int, xattrs: tuple[tuple[bytes, bytes], ...]) -> Checksum:
    """The content-object checksum a file on disk would have (regular files and symlinks)."""
    try:
        if stat.S_ISLNK(st.st_mode):
            header = FileHeader(uid, gid, st.st_mode, 0, os.readlink(path), xattrs)
            return Checksum(hashlib.sha256(header.checksum_prefix()).hexdigest())
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(path, "unsupported file type (device, fifo or socket)")
        h = hashlib.sha256(FileHeader(uid, gid, st.st_mode, 0, "", xattrs).checksum_prefix())
        with open(path, "rb", buffering=0) as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        return Checksum(h.hexdigest())
    except OSError as e:
        raise SourceError(path, e.strerror or str(e)) from e


def _shown(side: CommitSide | DirSide, path: str) -> str:
    """How ostree prints a path: absolute in a commit (``/a/b``), relative on disk (``a/b``)."""
    return path if isinstance(side, CommitSide) else path.lstrip("/")


def _added(side: CommitSide | DirSide, node: _Node, prefix: str, options: DiffOptions) -> Iterator[DiffEntry]:
    """Everything below an added directory, depth first."""
    stack = [(node, prefix)]
    while stack:
        n, pre = stack.pop()
        children = _children(side, n, options, target=True)
        for name in sorted(children, key=lambda s: s.encode()):
            child = children[name]
            yield DiffEntry(DiffKind.ADDED, _shown(side, f"{pre}/{name}"))
            if child.is_dir:
                stack.append((child, f"{pre}/{name}"))


def _diff_level(
    sides: tuple[CommitSide | DirSide, CommitSide | DirSide], a: _Node, b: _Node, prefix: str, options: DiffOptions
) -> Iterator[_Step]:
    if a.tree is not None and a.tree == b.tree:
        return
    ca = _children(sides[0], a, options, target=False)
    cb = _children(sides[1], b, options, target=True)
    for name in sorted(set(ca) | set(cb), key=lambda s: s.encode()):
        path = f"{prefix}/{name}"
        na, nb = ca.get(name), cb.get(name)
        if na is not None and nb is not None:
            if na.is_dir != nb.is_dir or na.checksum != nb.checksum:
                yield DiffEntry(DiffKind.MODIFIED, _shown(sides[0], path))
            if na.is_dir and nb.is_dir:
                yield _diff_level(sides, na, nb, path, options)
        elif na is not None:
            yield DiffEntry(DiffKind.DELETED, _shown(sides[0], path))
        elif nb is not None:
            yield DiffEntry(DiffKind.ADDED, _shown(sides[1], path))
            if nb.is_dir:
                yield _added(sides[1], nb, path, options)
