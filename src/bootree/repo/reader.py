"""Reading parsed objects out of a store: commits, dirtrees, dirmetas, and paths inside a tree.

Layer: repo. :class:`ObjectReader` is what the helpers of this package (checkout, traverse,
mtree, diff) need from a repository to read trees, so they take one of these instead of the
whole :class:`~bootree.repo.repo.Repo`. :meth:`ObjectReader.lookup` is the one walk from a
commit's root to a path (checkout ``--subpath``, ``ls``, ``cat``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from bootree.errors import CorruptObject, FormatError, ObjectMissing
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.objects import Commit, DirMeta, DirTree, dirtree_children, validate_filename
from bootree.repo.modes import RepoMode
from bootree.repo.objectstore import DiskObjectStore

__all__ = ["EntryKind", "ObjectReader", "TreeEntry"]


class EntryKind(StrEnum):
    """What a path in a commit's tree is (valued as ``ls``/``walk_tree`` have always printed)."""

    DIR = "d"
    FILE = "f"


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """A path in a commit's tree: a directory (dirtree + dirmeta) or a file (content object)."""

    path: str
    kind: EntryKind
    checksum: Checksum
    meta: Checksum | None = None


class ObjectReader:
    """Parsed reads of one store's metadata objects, with typed errors."""

    def __init__(self, store: DiskObjectStore) -> None:
        self.store = store
        self._dirmeta_cache: dict[Checksum, DirMeta] = {}

    @property
    def mode(self) -> RepoMode:
        """The store's mode."""
        return self.store.mode

    def _load(self, otype: ObjectType, csum: Checksum) -> bytes:
        return self.store.load_metadata(otype, csum)

    def read_commit(self, csum: Checksum) -> Commit:
        """Parse a commit object.

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        data = self._load(ObjectType.COMMIT, csum)
        try:
            return Commit.from_bytes(data)
        except FormatError as e:
            raise CorruptObject(csum, "commit", str(e)) from e

    def read_dirtree(self, csum: Checksum) -> DirTree:
        """Parse a dirtree object (names are validated: no ``..``, ``/`` or empty names).

        Objects already in the repository were checked when written (and fsck parses strictly),
        so reads use the fast parser with its safety checks.

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        data = self._load(ObjectType.DIR_TREE, csum)
        try:
            return DirTree.from_bytes(data, strict=False)
        except FormatError as e:
            raise CorruptObject(csum, "dirtree", str(e)) from e

    def read_dirtree_children(self, csum: Checksum) -> tuple[list[Checksum], list[tuple[Checksum, Checksum]]]:
        """The content objects and (dirtree, dirmeta) pairs a dirtree names, without its names.

        For reachability walks (prune after every deploy): see
        :func:`~bootree.format.objects.dirtree_children`.

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        data = self._load(ObjectType.DIR_TREE, csum)
        try:
            return dirtree_children(data)
        except FormatError as e:
            raise CorruptObject(csum, "dirtree", str(e)) from e

    def read_dirmeta(self, csum: Checksum) -> DirMeta:
        """Parse a dirmeta object (cached: a tree has few distinct ones, and objects never change).

        Raises:
            ObjectMissing, CorruptObject: if absent or malformed.
        """
        cached = self._dirmeta_cache.get(csum)
        if cached is not None:
            return cached
        data = self._load(ObjectType.DIR_META, csum)
        try:
            value = DirMeta.from_bytes(data)
        except FormatError as e:
            raise CorruptObject(csum, "dirmeta", str(e)) from e
        if len(self._dirmeta_cache) < 4096:
            self._dirmeta_cache[csum] = value
        return value

    def try_read_commit(self, csum: Checksum) -> Commit | None:
        """:meth:`read_commit`, or ``None`` for a commit that is missing or does not parse (for
        checks that leave reporting those to fsck)."""
        try:
            return self.read_commit(csum)
        except (ObjectMissing, CorruptObject):
            return None

    def read_commitmeta(self, csum: Checksum) -> bytes | None:
        """A commit's detached metadata bytes, or ``None``."""
        try:
            return self._load(ObjectType.COMMIT_META, csum)
        except ObjectMissing:
            return None

    def lookup(self, commit: Commit, subpath: str) -> TreeEntry | None:
        """The entry at ``subpath`` (``/``-separated, ``/`` or empty for the root), or None.

        Raises:
            InvalidTreeEntry: for a path component that could not be a tree entry (``..``).
            ObjectMissing, CorruptObject: for a damaged tree.
        """
        tree, meta = commit.root_tree, commit.root_meta
        parts = [p for p in subpath.split("/") if p]
        path = ""
        for i, part in enumerate(parts):
            validate_filename(part)
            dt = self.read_dirtree(tree)
            path += "/" + part
            sub = next(((t, m) for n, t, m in dt.dirs if n == part), None)
            if sub is not None:
                tree, meta = sub
                continue
            f = next((c for n, c in dt.files if n == part), None)
            if f is not None and i == len(parts) - 1:
                return TreeEntry(path, EntryKind.FILE, f)
            return None
        return TreeEntry(path or "/", EntryKind.DIR, tree, meta)

    def walk(self, tree: Checksum, prefix: str) -> Iterator[TreeEntry]:
        """Every entry below ``tree``: in each directory its files, then each subdirectory
        followed by its contents. Iterative, so a tree of any depth walks without recursion.

        Raises:
            ObjectMissing, CorruptObject: for a damaged tree.
        """
        stack = [iter(self._entries(tree, prefix))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            yield entry
            if entry.kind is EntryKind.DIR:
                stack.append(iter(self._entries(entry.checksum, entry.path)))

    def _entries(self, tree: Checksum, prefix: str) -> list[TreeEntry]:
        dt = self.read_dirtree(tree)
        out = [TreeEntry(f"{prefix}/{name}", EntryKind.FILE, c) for name, c in dt.files]
        out += [TreeEntry(f"{prefix}/{name}", EntryKind.DIR, t, m) for name, t, m in dt.dirs]
        return out
