"""Differences between the trees of two commits, as ``ostree diff`` lists them.

Layer: repo. Works on an :class:`~bootree.repo.reader.ObjectReader`; identical subtrees
(same dirtree checksum) are skipped without being read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from bootree.format.checksum import Checksum
from bootree.repo.reader import ObjectReader

__all__ = ["DiffEntry", "DiffKind", "diff_commits"]


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


def diff_commits(reader: ObjectReader, a: Checksum, b: Checksum) -> list[DiffEntry]:
    """Differences between the trees of commits ``a`` and ``b``.

    Modified files (content, mode or owner differ) are ``M``; an added directory is listed
    with everything below it; a removed directory is listed once. ostree prints modified, then
    removed, then added entries, and so does this.

    Raises:
        ObjectMissing, CorruptObject: for a damaged tree.
    """
    ca, cb = reader.read_commit(a), reader.read_commit(b)
    out: list[DiffEntry] = []
    # Depth-first over an explicit stack of per-directory generators, not recursion: a commit
    # can be deeper than Python's recursion limit (issue 10). Each generator yields entries,
    # or the generator of a subdirectory to descend into before going on.
    stack: list[Iterator[_Step]] = [_diff_level(reader, ca.root_tree, cb.root_tree, "")]
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


def _diff_level(reader: ObjectReader, ta: Checksum, tb: Checksum, prefix: str) -> Iterator[_Step]:
    if ta == tb:
        return
    da, db = reader.read_dirtree(ta), reader.read_dirtree(tb)
    fa, fb = dict(da.files), dict(db.files)
    dira = {n: (t, m) for n, t, m in da.dirs}
    dirb = {n: (t, m) for n, t, m in db.dirs}
    for name in sorted(set(fa) | set(fb) | set(dira) | set(dirb), key=lambda s: s.encode()):
        path = f"{prefix}/{name}"
        if name in fa and name in fb:
            if fa[name] != fb[name]:
                yield DiffEntry(DiffKind.MODIFIED, path)
        elif name in dira and name in dirb:
            if dira[name][1] != dirb[name][1]:
                yield DiffEntry(DiffKind.MODIFIED, path)
            yield _diff_level(reader, dira[name][0], dirb[name][0], path)
        else:
            if name in fa or name in dira:
                yield DiffEntry(DiffKind.DELETED, path)
            if name in fb:
                yield DiffEntry(DiffKind.ADDED, path)
            elif name in dirb:
                yield DiffEntry(DiffKind.ADDED, path)
                yield from (DiffEntry(DiffKind.ADDED, e.path) for e in reader.walk(dirb[name][0], path))
