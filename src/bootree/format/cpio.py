"""The cpio "newc" archive format (``cpio -H newc``; SVR4 with or without CRC), read side.

Layer: format (pure). ``ostree commit --tree=tar=FILE`` reads whatever libarchive reads, and
its tests commit a ``find . | cpio -o -H newc`` archive that way; this decodes one from a
stream. Each header is the magic ``070701`` (or ``070702``, with a checksum we do not verify)
and thirteen 8-digit hex fields; the name (NUL-terminated) and then the data follow, each padded
to a multiple of 4 bytes. ``TRAILER!!!`` ends the archive.

Hardlinks: cpio stores a group of names for one inode (same ``dev``/``ino``, ``nlink`` > 1) as
separate entries, and GNU cpio puts the data in the last of them only (the others have size 0);
:func:`read_newc` therefore yields an inode's names once its data is known, every name with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from bootree.errors import FormatError

__all__ = ["CPIO_MAGICS", "CpioEntry", "read_newc"]

#: The first bytes of a newc archive (without and with checksums).
CPIO_MAGICS = (b"070701", b"070702")
_HEADER = 110
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True, slots=True)
class CpioEntry:
    """One name in the archive: its metadata and, for regular files and symlinks, its data.

    ``link_of`` is the first name of the same inode when this entry is a further hardlink
    (its data is then the same and not repeated here: ``data`` is empty).
    """

    name: str
    mode: int
    uid: int
    gid: int
    mtime: int
    data: bytes
    link_of: str | None = None


def _read(stream: BinaryIO, n: int) -> bytes:
    out = stream.read(n)
    if len(out) != n:
        raise FormatError(f"cpio archive is truncated (wanted {n} bytes, got {len(out)})")
    return out


def _pad(stream: BinaryIO, length: int) -> None:
    extra = -length % 4
    if extra:
        _read(stream, extra)


def read_newc(stream: BinaryIO, *, first: bytes = b"") -> Iterator[CpioEntry]:
    """The entries of a newc archive read from ``stream`` (``first``: bytes already read of it).

    Raises:
        FormatError: for a bad magic, a malformed field, a name that is not UTF-8, or a
            truncated archive.
    """
    pending: dict[tuple[int, int, int, int], list[CpioEntry]] = {}
    head = first
    while True:
        header = head + _read(stream, _HEADER - len(head))
        head = b""
        if header[:6] not in CPIO_MAGICS:
            raise FormatError(f"not a cpio newc header: {header[:6]!r}")
        try:
            f = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise FormatError("cpio header has a field that is not hexadecimal") from None
        ino, mode, uid, gid, nlink, mtime, size, devmaj, devmin, _rmaj, _rmin, namesize, _check = f
        if namesize < 1:
            raise FormatError("cpio header has an empty name")
        raw = _read(stream, namesize)
        _pad(stream, _HEADER + namesize)
        try:
            name = raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"cpio member name is not UTF-8: {raw!r}") from None
        if name == _TRAILER:
            break
        data = _read(stream, size)
        _pad(stream, size)
        entry = CpioEntry(name, mode, uid, gid, mtime, data)
        is_dir = mode & 0o170000 == 0o040000
        if nlink > 1 and not is_dir:
            key = (devmaj, devmin, ino, mode)
            group = pending.setdefault(key, [])
            group.append(entry)
            if size == 0 and len(group) < nlink:
                continue  # the data comes with a later name of this inode
            yield from _link_group(pending.pop(key), data)
            continue
        yield entry
    for group in pending.values():  # an inode whose names were not all archived
        yield from _link_group(group, next((e.data for e in group if e.data), b""))


def _link_group(group: list[CpioEntry], data: bytes) -> Iterator[CpioEntry]:
    first = group[0]
    yield CpioEntry(first.name, first.mode, first.uid, first.gid, first.mtime, data)
    for e in group[1:]:
        yield CpioEntry(e.name, e.mode, e.uid, e.gid, e.mtime, b"", link_of=first.name)
