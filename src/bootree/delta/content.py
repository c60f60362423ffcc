"""Reading content objects for delta work: header, sizes and whole content, in every repo mode.

Layer: delta. Generation needs each new object's size before reading it (to pick fallbacks and
similar pairs) and the object's on-disk size (a fallback's download size); application needs
the whole content of a read source, which ``w`` and ``B`` address by offset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bootree.errors import CorruptObject, FormatError, ObjectMissing
from bootree.format.checksum import Checksum
from bootree.format.content import decode_archive_header
from bootree.format.objects import FileHeader, ObjectType
from bootree.repo import Repo, RepoMode

__all__ = ["ContentInfo", "content_info", "load_content"]


@dataclass(frozen=True, slots=True)
class ContentInfo:
    """A content object's header, its content size and the size of its file in the repository."""

    header: FileHeader
    size: int
    storage_size: int


def content_info(repo: Repo, csum: Checksum) -> ContentInfo:
    """Header and sizes of a content object, without reading its content.

    Raises:
        ObjectMissing, CorruptObject: if absent or unreadable.
    """
    path = repo.object_path(ObjectType.FILE, csum)
    if repo.mode is RepoMode.ARCHIVE:
        try:
            with open(path, "rb") as f:
                prefix = f.read(8)
                head = prefix + f.read(int.from_bytes(prefix[:4], "big")) if len(prefix) == 8 else prefix
                storage = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            raise ObjectMissing(csum, "file") from None
        try:
            parsed = decode_archive_header(head)
        except FormatError as exc:
            raise CorruptObject(csum, "file", str(exc)) from exc
        return ContentInfo(parsed.header, 0 if parsed.header.is_symlink else parsed.size, storage)
    header, stream = repo.open_file(csum)
    if stream is None:
        return ContentInfo(header, 0, os.lstat(path).st_size)
    with stream:  # type: ignore[attr-defined]
        size = os.fstat(stream.fileno()).st_size  # type: ignore[attr-defined]
    return ContentInfo(header, size, size)


def load_content(repo: Repo, csum: Checksum) -> bytes:
    """The whole content of a regular-file object (empty for a symlink).

    Raises:
        ObjectMissing, CorruptObject: if absent or unreadable.
    """
    return repo.load_file(csum)[1]
