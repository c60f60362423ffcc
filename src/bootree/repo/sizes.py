"""Object sizes of a commit's tree: the ``ostree.sizes`` index ``commit --generate-sizes``
writes, and what ``show --print-sizes`` reports from it.

Layer: repo. :mod:`bootree.format.sizes` is the codec. Sizes are read from the objects as
stored (an archive repository's ``.filez`` size is the archived size), which is what a client
downloads from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from bootree.format.checksum import Checksum, ObjectType
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit
from bootree.format.sizes import SIZES_KEY, SizeEntry, decode_sizes, encode_sizes
from bootree.repo.reader import EntryKind, ObjectReader

__all__ = ["SizesReport", "sizes_metadata", "sizes_report"]


def sizes_metadata(reader: ObjectReader, tree: Checksum, meta: Checksum) -> list[tuple[str, Variant]]:
    """``[("ostree.sizes", ...)]`` for the tree ``(tree, meta)``: every dirtree, dirmeta and
    content object it reaches, each once.

    Raises:
        ObjectMissing, CorruptObject: for a damaged tree.
    """
    store = reader.store
    entries: list[SizeEntry] = []

    def metadata(otype: ObjectType, csum: Checksum) -> None:
        size = len(store.load_metadata(otype, csum))
        entries.append(SizeEntry(csum, size, size, otype))

    metadata(ObjectType.DIR_TREE, tree)
    metadata(ObjectType.DIR_META, meta)
    seen: set[tuple[ObjectType, Checksum]] = {(ObjectType.DIR_TREE, tree), (ObjectType.DIR_META, meta)}
    for e in reader.walk(tree, ""):
        if e.kind is EntryKind.DIR:
            assert e.meta is not None
            for otype, csum in ((ObjectType.DIR_TREE, e.checksum), (ObjectType.DIR_META, e.meta)):
                if (otype, csum) not in seen:
                    seen.add((otype, csum))
                    metadata(otype, csum)
        elif (ObjectType.FILE, e.checksum) not in seen:
            seen.add((ObjectType.FILE, e.checksum))
            header, size = store.stat_file(e.checksum)
            # As ostree: a symbolic link's unpacked size is its target's length.
            unpacked = len(header.symlink_target.encode()) if header.symlink_target else size
            archived = os.lstat(store.path(ObjectType.FILE, e.checksum)).st_size if store.mode.value == "archive" else unpacked
            entries.append(SizeEntry(e.checksum, archived, unpacked, ObjectType.FILE))
    return [(SIZES_KEY, encode_sizes(entries))]


@dataclass(frozen=True, slots=True)
class SizesReport:
    """What pulling a commit would still download, from its ``ostree.sizes``."""

    archived_needed: int
    archived_total: int
    unpacked_needed: int
    unpacked_total: int
    objects_needed: int
    objects_total: int


def sizes_report(commit: Commit, has: Callable[[ObjectType, Checksum], bool]) -> SizesReport | None:
    """The sizes a commit records and how much of it the repository lacks (``None`` when the
    commit carries no ``ostree.sizes``).

    Raises:
        FormatError: for a malformed index.
    """
    value = next((v for k, v in commit.metadata if k == SIZES_KEY), None)
    if value is None:
        return None
    entries = decode_sizes(value)
    missing = [e for e in entries if not has(e.otype, e.checksum)]
    return SizesReport(
        sum(e.archived for e in missing), sum(e.archived for e in entries),
        sum(e.unpacked for e in missing), sum(e.unpacked for e in entries),
        len(missing), len(entries),
    )
