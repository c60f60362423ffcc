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
from enum import StrEnum
from functools import lru_cache
from typing import Protocol, cast

from bootree.errors import FormatError
from bootree.format import gvariant
from bootree.format.objects import FileHeader, Xattrs, bswap32, bswap64

__all__ = [
    "ARCHIVE_HEADER_TYPE",
    "BARE_USER_META_TYPE",
    "BARE_USER_XATTR",
    "ArchivedFile",
    "Compressor",
    "CompressorFactory",
    "ContentFraming",
    "ContentStreamDecoder",
    "Decompressor",
    "DecompressorFactory",
    "archive_header_length",
    "bare_user_disk_mode",
    "decode_archive_header",
    "decode_bare_user_meta",
    "deflate_chunks",
    "encode_archive_header",
    "encode_bare_user_meta",
    "inflate_chunks",
    "inflate_whole",
    "read_archive_header",
    "stream_header_length",
]

ARCHIVE_HEADER_TYPE = "(tuuuusa(ayay))"
BARE_USER_META_TYPE = "(uuua(ayay))"
#: The xattr bare-user repositories keep a content object's real metadata in.
BARE_USER_XATTR = "user.ostreemeta"

#: Default ``[archive] zlib-level``.
DEFAULT_ZLIB_LEVEL = 6


class Compressor(Protocol):
    """What a ``zlib.compressobj()`` is (zlib-ng's is one too)."""

    def compress(self, data: bytes | memoryview, /) -> bytes: ...
    def flush(self) -> bytes: ...


class Decompressor(Protocol):
    """What a ``zlib.decompressobj()`` is (zlib-ng's is one too)."""

    @property
    def unconsumed_tail(self) -> bytes: ...
    @property
    def unused_data(self) -> bytes: ...
    @property
    def eof(self) -> bool: ...
    def decompress(self, data: bytes | memoryview, /, max_length: int = ...) -> bytes: ...
    def flush(self) -> bytes: ...


#: ``zlib.compressobj(level, method, wbits)`` or a compatible factory.
CompressorFactory = Callable[[int, int, int], Compressor]
#: ``zlib.decompressobj(wbits)`` or a compatible factory.
DecompressorFactory = Callable[[int], Decompressor]




def encode_archive_header(header: FileHeader, size: int) -> bytes:
    """The prefix of a ``.filez`` object: 8-byte length prefix plus ``(tuuuusa(ayay))``.

    Every archived object gets one, and the gvariant encoder is pure Python: the bytes around
    the size are encoded once per distinct header (a tree has few) and the size spliced in.
    """
    if not 0 <= size < 1 << 64:
        return _encode_archive_header(header, size)  # the encoder's own error
    head, tail = _archive_header_parts(header)
    return head + size.to_bytes(8, "big") + tail


def _encode_archive_header(header: FileHeader, size: int) -> bytes:
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


@lru_cache(maxsize=4096)
def _archive_header_parts(header: FileHeader) -> tuple[bytes, bytes]:
    """The encoded prefix before and after the size (``t``, the tuple's first, fixed 8 bytes).

    Proven for each header against the encoder itself: two sizes that differ in every byte
    encode alike except for those 8 bytes, which hold the size big-endian.
    """
    low = _encode_archive_header(header, 0)
    high = _encode_archive_header(header, (1 << 64) - 1)
    if len(low) != len(high) or low[:8] != high[:8] or low[16:] != high[16:] or high[8:16] != b"\xff" * 8:
        raise AssertionError("the archive header's size is not where the splice expects it")
    return low[:8], low[16:]


class ArchivedFile:
    """A parsed ``.filez`` prefix: the header, the uncompressed size, and where the body starts."""

    __slots__ = ("body_offset", "header", "size")

    def __init__(self, header: FileHeader, size: int, body_offset: int) -> None:
        self.header = header
        self.size = size
        self.body_offset = body_offset


def archive_header_length(prefix: bytes | bytearray | memoryview) -> int:
    """How many bytes the header of a ``.filez`` object takes, from its first 8 bytes.

    The one place that reads the length prefix: callers reading from a file or a socket read 8
    bytes, then this many minus 8, then hand the whole header to :func:`decode_archive_header`.

    Raises:
        FormatError: if ``prefix`` is shorter than 8 bytes or the padding is not zero.
    """
    if len(prefix) < 8:
        raise FormatError("archive file object is truncated")
    if bytes(prefix[4:8]) != b"\0\0\0\0":
        raise FormatError("archive file object has a bad prefix")
    hlen = int.from_bytes(prefix[:4], "big")
    if hlen < 8:
        raise FormatError("archive file object header is truncated")
    return 8 + hlen


def stream_header_length(prefix: bytes | bytearray | memoryview) -> int:
    """How many bytes the header of a checksum stream (``u32be(len(H)) 00000000 H``) takes,
    from its first 8 bytes: the one reader of that prefix.

    Raises:
        FormatError: if ``prefix`` is shorter than 8 bytes or the padding is not zero.
    """
    if len(prefix) < 8 or bytes(prefix[4:8]) != b"\0\0\0\0":
        raise FormatError("content stream has a bad prefix")
    return 8 + int.from_bytes(prefix[:4], "big")


def read_archive_header(read: Callable[[int], bytes]) -> ArchivedFile:
    """Parse a ``.filez`` header through ``read(n)`` (a file's ``read``), leaving it at the body.

    Raises:
        FormatError: for a truncated or malformed header.
    """
    prefix = read(8)
    rest = read(archive_header_length(prefix) - 8)
    return decode_archive_header(prefix + rest)


def decode_archive_header(data: bytes | memoryview) -> ArchivedFile:
    """Parse the start of a ``.filez`` object (``data`` may hold more than the header).

    Raises:
        FormatError: for a truncated or malformed header.
    """
    end = archive_header_length(data)
    if len(data) < end:
        raise FormatError("archive file object header is truncated")
    # Everything after the size field decodes the same whatever the size is (``t`` is fixed-width
    # and 8-aligned), and a tree has few distinct owner/mode/xattr combinations: cache on that.
    header = _decode_archive_rest(bytes(data[16:end]))
    return ArchivedFile(header, int.from_bytes(data[8:16], "big"), end)


@lru_cache(maxsize=4096)
def _decode_archive_rest(rest: bytes) -> FileHeader:
    """The header of a ``(tuuuusa(ayay))`` whose bytes after the size are ``rest``."""
    _, uid, gid, mode, rdev, target, xattrs = cast(
        "tuple[int, int, int, int, int, str, list[tuple[bytes, bytes]]]", gvariant.decode(ARCHIVE_HEADER_TYPE, bytes(8) + rest)
    )
    xa: list[tuple[bytes, bytes]] = []
    for n, v in xattrs:
        if not n.endswith(b"\0"):
            raise FormatError("xattr name is not NUL-terminated")
        xa.append((n[:-1], v))
    return FileHeader(bswap32(uid), bswap32(gid), bswap32(mode), bswap32(rdev), target, tuple(xa))


def deflate_chunks(
    chunks: Iterable[bytes],
    level: int = DEFAULT_ZLIB_LEVEL,
    compressobj: CompressorFactory = zlib.compressobj,
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
    chunks: Iterable[bytes | memoryview],
    expected_size: int,
    decompressobj: DecompressorFactory = zlib.decompressobj,
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


def inflate_whole(
    body: bytes | memoryview,
    expected_size: int,
    decompressobj: DecompressorFactory = zlib.decompressobj,
    error_types: tuple[type[Exception], ...] = (zlib.error,),
) -> bytes:
    """:func:`inflate_chunks` of a body held whole, as one ``bytes`` (no generator, no join).

    A pull verifies thousands of small objects on its engine thread; this is their hot path.
    The checks are the same, and so are the errors.

    Raises:
        FormatError: as :func:`inflate_chunks`.
    """
    decomp = decompressobj(-15)
    try:
        out = decomp.decompress(body, expected_size + 1)
        if len(out) > expected_size or decomp.unconsumed_tail:
            raise FormatError("archive file object inflates to more than its declared size")
        # At the stream's end nothing is buffered (the output was under the limit): no flush.
        tail = b"" if decomp.eof else decomp.flush()
    except error_types as e:
        raise FormatError(f"archive file object does not inflate: {e}") from e
    if tail:
        out += tail
    if not decomp.eof:
        raise FormatError("archive file object is truncated (deflate stream not finished)")
    if decomp.unused_data:
        raise FormatError("archive file object has trailing data")
    if len(out) != expected_size:
        raise FormatError(f"archive file object inflates to {len(out)} bytes, header says {expected_size}")
    return out


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
    uid, gid, mode, xattrs = cast("tuple[int, int, int, list[tuple[bytes, bytes]]]", gvariant.decode(BARE_USER_META_TYPE, data))
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


class ContentFraming(StrEnum):
    """How a content object travels between repositories (a pull's wire formats)."""

    #: ``.filez``: archive header with the size, then a raw DEFLATE body (HTTP remotes).
    ARCHIVED = "filez"
    #: The checksum stream ``u32be(len(H)) 00000000 H content`` (bare-family local sources).
    STREAM = "file"


class ContentStreamDecoder:
    """Incremental decoder of a received content object: bytes in, header and content out.

    For objects too large to hold whole: :meth:`feed` takes the received bytes in any chunking
    and returns the uncompressed content that became available; :attr:`header` is set as soon
    as the framing header is complete; :meth:`finish` checks that the object ended where its
    framing says. The repository hashes what comes out, so nothing here is trusted.
    """

    def __init__(
        self,
        framing: ContentFraming,
        decompressobj: DecompressorFactory = zlib.decompressobj,
        error_types: tuple[type[Exception], ...] = (zlib.error,),
    ) -> None:
        self.framing = framing
        self.header: FileHeader | None = None
        #: The uncompressed content size (known from the header for ``filez``, counted otherwise).
        self.size: int | None = None
        self._head = bytearray()
        self._need = 8
        self._decomp = decompressobj(-15) if framing is ContentFraming.ARCHIVED else None
        self._errors = error_types
        self._out = 0

    def feed(self, chunk: bytes | memoryview) -> list[bytes]:
        """The content bytes that ``chunk`` completes (possibly none).

        Raises:
            FormatError: for a malformed header, a corrupt body, or more content than declared.
        """
        if self.header is None:
            self._head += chunk
            if len(self._head) < self._need:
                return []
            if self._need == 8:
                if self.framing is ContentFraming.ARCHIVED:
                    self._need = archive_header_length(self._head)
                else:
                    self._need = stream_header_length(self._head)
                if len(self._head) < self._need:
                    return []
            head, rest = bytes(self._head[: self._need]), memoryview(bytes(self._head[self._need :]))
            self._head = bytearray()
            if self.framing is ContentFraming.ARCHIVED:
                parsed = decode_archive_header(head)
                self.header, self.size = parsed.header, parsed.size
            else:
                self.header = FileHeader.from_bytes(head[8:])
            return self._body(rest) if len(rest) else []
        return self._body(chunk)

    def _body(self, chunk: bytes | memoryview) -> list[bytes]:
        assert self.header is not None
        if not len(chunk):
            return []
        if self.header.is_symlink:
            raise FormatError("symlink object has a body")
        if self._decomp is None:
            self._out += len(chunk)
            return [bytes(chunk)]
        assert self.size is not None
        try:
            out = self._decomp.decompress(chunk, self.size - self._out + 1)
        except self._errors as e:
            raise FormatError(f"archive file object does not inflate: {e}") from e
        self._out += len(out)
        if self._out > self.size or self._decomp.unconsumed_tail:
            raise FormatError("archive file object inflates to more than its declared size")
        return [out] if out else []

    def finish(self) -> list[bytes]:
        """The last content bytes; checks the object is complete.

        Raises:
            FormatError: for a truncated header or body, or trailing data.
        """
        if self.header is None:
            raise FormatError("content object is truncated (incomplete header)")
        if self._decomp is None:
            self.size = self._out
            return []
        assert self.size is not None
        if self.header.is_symlink:
            return []
        try:
            out = self._decomp.flush()
        except self._errors as e:
            raise FormatError(f"archive file object does not inflate: {e}") from e
        self._out += len(out)
        if not self._decomp.eof:
            raise FormatError("archive file object is truncated (deflate stream not finished)")
        if self._decomp.unused_data:
            raise FormatError("archive file object has trailing data")
        if self._out != self.size:
            raise FormatError(f"archive file object inflates to {self._out} bytes, header says {self.size}")
        return [out] if out else []
