"""Framing of file (content) objects as each repository mode stores them.

Layer: format. Pure encoders and decoders; the storage layer does the I/O.

* archive ``.filez``: ``u32be(len(Z)) 00000000 Z`` then the content as a raw DEFLATE stream,
  where ``Z = (tuuuusa(ayay))`` is the file header with the uncompressed size in front.
  Symlinks have no body at all; an empty regular file has the empty deflate stream ``03 00``.
* bare-user: the header's owner, mode and xattrs live in the xattr ``user.ostreemeta`` as
  ``(uuua(ayay))``; symlinks are stored as regular files holding ``target + NUL``.
"""

from __future__ import annotations

import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

from bootree.errors import FormatError
from bootree.format import gvariant
from bootree.format.objects import FileHeader, Xattrs, bswap32, bswap64

__all__ = [
    "ARCHIVE_HEADER_TYPE",
    "BARE_USER_META_TYPE",
    "BARE_USER_XATTR",
    "ArchivedFile",
    "bare_user_disk_mode",
    "decode_archive_header",
    "decode_bare_user_meta",
    "deflate_chunks",
    "encode_archive_header",
    "encode_bare_user_meta",
    "inflate_chunks",
]

ARCHIVE_HEADER_TYPE = "(tuuuusa(ayay))"
BARE_USER_META_TYPE = "(uuua(ayay))"
#: The xattr bare-user repositories keep a content object's real metadata in.
BARE_USER_XATTR = "user.ostreemeta"

#: Default ``[archive] zlib-level``.
DEFAULT_ZLIB_LEVEL = 6




def encode_archive_header(header: FileHeader, size: int) -> bytes:
    """The prefix of a ``.filez`` object: 8-byte length prefix plus ``(tuuuusa(ayay))``."""
    z = gvariant.encode(
        ARCHIVE_HEADER_TYPE,
        (
            bswap64(size),
            bswap32(header.uid),
            bswap32(header.gid),
            bswap32(header.mode),
            bswap32(header.rdev),
            header.symlink_target,
            [(n + b"\0", v) for n, v in header.xattrs],
        ),
    )
    return len(z).to_bytes(4, "big") + b"\0\0\0\0" + z


class ArchivedFile:
    """A parsed ``.filez`` prefix: the header, the uncompressed size, and where the body starts."""

    __slots__ = ("body_offset", "header", "size")

    def __init__(self, header: FileHeader, size: int, body_offset: int) -> None:
        self.header = header
        self.size = size
        self.body_offset = body_offset


def decode_archive_header(data: bytes | memoryview) -> ArchivedFile:
    """Parse the start of a ``.filez`` object (``data`` may hold more than the header).

    Raises:
        FormatError: for a truncated or malformed header.
    """
    if len(data) < 8:
        raise FormatError("archive file object is truncated")
    hlen = int.from_bytes(data[:4], "big")
    if bytes(data[4:8]) != b"\0\0\0\0":
        raise FormatError("archive file object has a bad prefix")
    if len(data) < 8 + hlen:
        raise FormatError("archive file object header is truncated")
    if hlen < 8:
        raise FormatError("archive file object header is truncated")
    # Everything after the size field decodes the same whatever the size is (``t`` is fixed-width
    # and 8-aligned), and a tree has few distinct owner/mode/xattr combinations: cache on that.
    header = _decode_archive_rest(bytes(data[16 : 8 + hlen]))
    return ArchivedFile(header, int.from_bytes(data[8:16], "big"), 8 + hlen)


@lru_cache(maxsize=4096)
def _decode_archive_rest(rest: bytes) -> FileHeader:
    """The header of a ``(tuuuusa(ayay))`` whose bytes after the size are ``rest``."""
    _, uid, gid, mode, rdev, target, xattrs = gvariant.decode(ARCHIVE_HEADER_TYPE, bytes(8) + rest)
    xa: list[tuple[bytes, bytes]] = []
    for n, v in xattrs:
        if not n.endswith(b"\0"):
            raise FormatError("xattr name is not NUL-terminated")
        xa.append((n[:-1], v))
    return FileHeader(bswap32(uid), bswap32(gid), bswap32(mode), bswap32(rdev), target, tuple(xa))


def deflate_chunks(
    chunks: Iterable[bytes],
    level: int = DEFAULT_ZLIB_LEVEL,
    compressobj: Callable[[int, int, int], Any] = zlib.compressobj,
) -> Iterator[bytes]:
    """Compress ``chunks`` to a raw DEFLATE stream (no zlib header), as ostree's archive mode.

    ``compressobj`` may be any zlib-compatible factory (the storage layer passes zlib-ng's when
    it is installed); readers only need a valid DEFLATE stream, not identical bytes.
    """
    comp = compressobj(level, zlib.DEFLATED, -15)
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


def inflate_chunks(
    chunks: Iterable[bytes],
    expected_size: int,
    decompressobj: Callable[[int], Any] = zlib.decompressobj,
    error_types: tuple[type[Exception], ...] = (zlib.error,),
) -> Iterator[bytes]:
    """Decompress a raw DEFLATE stream, checking it ends exactly at ``expected_size`` bytes.

    ``decompressobj`` may be any zlib-compatible factory (zlib-ng's inflates faster), with
    ``error_types`` the exceptions it raises for corrupt input.

    Raises:
        FormatError: for corrupt data, a stream that is too long, too short or has trailing data.
    """
    decomp = decompressobj(-15)
    total = 0
    try:
        for chunk in chunks:
            out = decomp.decompress(chunk, expected_size - total + 1)
            total += len(out)
            if total > expected_size or decomp.unconsumed_tail:
                raise FormatError("archive file object inflates to more than its declared size")
            if out:
                yield out
        out = decomp.flush()
    except error_types as e:
        raise FormatError(f"archive file object does not inflate: {e}") from e
    total += len(out)
    if out:
        yield out
    if not decomp.eof:
        raise FormatError("archive file object is truncated (deflate stream not finished)")
    if decomp.unused_data:
        raise FormatError("archive file object has trailing data")
    if total != expected_size:
        raise FormatError(f"archive file object inflates to {total} bytes, header says {expected_size}")


def encode_bare_user_meta(header: FileHeader) -> bytes:
    """The ``user.ostreemeta`` value for a bare-user object: ``(uuua(ayay))``."""
    return gvariant.encode(
        BARE_USER_META_TYPE,
        (bswap32(header.uid), bswap32(header.gid), bswap32(header.mode), [(n + b"\0", v) for n, v in header.xattrs]),
    )


def decode_bare_user_meta(data: bytes) -> tuple[int, int, int, Xattrs]:
    """Parse a ``user.ostreemeta`` value into ``(uid, gid, mode, xattrs)``.

    Raises:
        FormatError: for malformed data.
    """
    uid, gid, mode, xattrs = gvariant.decode(BARE_USER_META_TYPE, data)
    xa: list[tuple[bytes, bytes]] = []
    for n, v in xattrs:
        if not n.endswith(b"\0"):
            raise FormatError("xattr name is not NUL-terminated")
        xa.append((n[:-1], v))
    return bswap32(uid), bswap32(gid), bswap32(mode), tuple(xa)


def bare_user_disk_mode(mode: int) -> int:
    """The permission bits a bare-user object file gets on disk (symlinks become 0644 files)."""
    if stat.S_ISLNK(mode):
        return 0o644
    return (mode & 0o775) | stat.S_IRUSR
