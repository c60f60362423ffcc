"""MutableTree: a directory tree being assembled in memory before it becomes dirtree objects.

Layer: repo. Holds only names and checksums (never file contents), so a 12,000-file tree takes
a few megabytes. Several sources (``--tree=dir=``, ``--tree=tar=``, ``--tree=ref=``) overlay
into one tree, later ones replacing earlier entries of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bootree.errors import SourceError
from bootree.format.checksum import Checksum
from bootree.format.objects import DirMeta, DirTree, validate_filename
from bootree.repo.reader import ObjectReader
from bootree.repo.transaction import Transaction

__all__ = ["DEFAULT_DIRMETA", "MutableTree"]

#: The metadata of directories a source implies but does not describe (tar parents): root, 0755.
DEFAULT_DIRMETA = DirMeta(0, 0, 0o40755)


@dataclass
class MutableTree:
    """A directory: its metadata checksum, files by name and subdirectories by name."""

    meta: Checksum | None = None
    files: dict[str, Checksum] = field(default_factory=dict)
    dirs: dict[str, MutableTree] = field(default_factory=dict)

    def ensure_dir(self, name: str) -> MutableTree:
        """The subdirectory ``name``, created if missing (replacing a file of that name)."""
        validate_filename(name)
        sub = self.dirs.get(name)
        if sub is None:
            self.files.pop(name, None)
            sub = self.dirs[name] = MutableTree()
        return sub

    def lookup_dir(self, parts: list[str]) -> MutableTree:
        """Walk to (creating) the directory at ``parts``."""
        node = self
        for p in parts:
            node = node.ensure_dir(p)
        return node

    def set_file(self, name: str, csum: Checksum) -> None:
        """Add or replace a file entry (replacing a directory of that name)."""
        validate_filename(name)
        self.dirs.pop(name, None)
        self.files[name] = csum

    def find_file(self, parts: list[str]) -> Checksum | None:
        """The content checksum at ``parts``, if that path is a file."""
        node = self
        for p in parts[:-1]:
            nxt = node.dirs.get(p)
            if nxt is None:
                return None
            node = nxt
        return node.files.get(parts[-1]) if parts else None

    def overlay_commit_tree(self, reader: ObjectReader, tree: Checksum, meta: Checksum) -> None:
        """Merge a committed tree into this one (used for ``--tree=ref=``).

        Iterative, as every tree walk: a tree may be deeper than Python's recursion limit.
        """
        todo: list[tuple[MutableTree, Checksum, Checksum]] = [(self, tree, meta)]
        while todo:
            node, t, m = todo.pop()
            node.meta = m
            dt = reader.read_dirtree(t)
            for name, csum in dt.files:
                node.set_file(name, csum)
            todo.extend((node.ensure_dir(name), sub_tree, sub_meta) for name, sub_tree, sub_meta in dt.dirs)

    def write(self, txn: Transaction) -> tuple[Checksum, Checksum]:
        """Write dirtree/dirmeta objects bottom-up; return ``(tree, meta)`` of this directory.

        Post-order over an explicit stack (a directory is written once all its subdirectories
        are), so the depth of the tree is not bounded by Python's recursion limit.

        Raises:
            SourceError: never for well-formed trees; names were validated on insertion.
        """
        written: dict[int, tuple[Checksum, Checksum]] = {}
        stack: list[tuple[MutableTree, bool]] = [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if not children_done:
                stack.append((node, True))
                stack.extend((sub, False) for sub in node.dirs.values())
                continue
            dirs = {name: written.pop(id(sub)) for name, sub in node.dirs.items()}
            try:
                tree = DirTree.build(node.files, dirs)
            except ValueError as e:  # pragma: no cover - names are validated on insertion
                raise SourceError("<tree>", str(e)) from e
            tree_csum = txn.write_dirtree(tree)
            meta = node.meta if node.meta is not None else txn.write_dirmeta(DEFAULT_DIRMETA)
            written[id(node)] = (tree_csum, meta)
        return written[id(self)]
