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
from bootree.format.content import archive_header_length, decode_archive_header
from bootree.format.objects import FileHeader, ObjectType
from bootree.repo import Repo, RepoMode

#: What one read takes of an archive object: its header (mode, owner, xattrs) nearly always fits.
_HEAD = 4096

__all__ = ["ContentInfo", "content_info", "load_content"]


@dataclass(frozen=True, slots=True)
class ContentInfo:
    """A content object's header, its content size and the size of its file in the repository."""

    header: FileHeader
    size: int
    storage_size: int


def content_info(repo: Repo, csum: Checksum) -> ContentInfo:
    """Header and sizes of a content object, without reading its content.

    Generation asks this of every file of both trees, so an archive object costs one open,
    one read of its first 4 KiB and one ``fstat`` (a header that does not fit takes the
    general path).

    Raises:
        ObjectMissing, CorruptObject: if absent or unreadable.
    """
    if repo.mode is RepoMode.ARCHIVE:
        path = repo.object_path(ObjectType.FILE, csum)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectMissing(csum, "file") from None
        try:
            head = os.pread(fd, _HEAD, 0)
            storage = os.fstat(fd).st_size
        finally:
            os.close(fd)
        try:
            if len(head) >= 8 and archive_header_length(head) <= len(head):
                parsed = decode_archive_header(head)
                size = 0 if parsed.header.is_symlink else parsed.size
                return ContentInfo(parsed.header, size, storage)
        except FormatError as exc:
            raise CorruptObject(csum, "file", str(exc)) from exc
    with repo.open_file(csum) as obj:
        size = 0 if obj.stream is None else obj.size
        if size < 0:
            size = repo.content_size(csum)
        return ContentInfo(obj.header, size, os.lstat(repo.object_path(ObjectType.FILE, csum)).st_size)


def load_content(repo: Repo, csum: Checksum) -> bytes:
    """The whole content of a regular-file object (empty for a symlink).

    Raises:
        ObjectMissing, CorruptObject: if absent or unreadable.
    """
    return repo.load_file(csum)[1]
