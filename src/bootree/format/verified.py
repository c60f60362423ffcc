"""Verified values: object bytes whose checksum (and, for metadata, whose parse) is proven.

Layer: format. A repository write never rests on a flag the caller sets: the transaction takes
a :class:`VerifiedMetadata` or a :class:`VerifiedContent`, and the only ways to get one are the
factories below, each of which either hashes bytes it has just serialized from a valid value
(``of``) or hashes and strictly parses bytes received from elsewhere (``parse*``). The
constructor is guarded by a private token, so "verified" is a fact about how the value was made,
not a promise (see ``docs/adr/0004-verified-values.md``).

Every factory hashes exactly once; the repository never hashes a verified value again, which
keeps the commit path as fast as when the caller could say "trusted".
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Final

from bootree.errors import ChecksumMismatch, CorruptObject, FormatError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import (
    DecompressorFactory,
    decode_archive_header,
    inflate_whole,
    stream_header_length,
)
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader

__all__ = ["MetadataValue", "VerifiedContent", "VerifiedMetadata"]

#: The values a metadata object parses to.
MetadataValue = Commit | DirTree | DirMeta

_TOKEN: Final = object()

_TYPE_OF_VALUE: dict[type, ObjectType] = {
    Commit: ObjectType.COMMIT,
    DirTree: ObjectType.DIR_TREE,
    DirMeta: ObjectType.DIR_META,
}


def _parse_value(otype: ObjectType, data: bytes) -> MetadataValue:
    if otype is ObjectType.COMMIT:
        return Commit.from_bytes(data)
    if otype is ObjectType.DIR_TREE:
        return DirTree.from_bytes(data)
    if otype is ObjectType.DIR_META:
        return DirMeta.from_bytes(data)
    raise FormatError(f"{otype.value} is not a commit, dirtree or dirmeta object")


def _sha256(data: bytes) -> Checksum:
    return Checksum(hashlib.sha256(data).hexdigest())


class VerifiedMetadata:
    """A commit, dirtree or dirmeta object: ``checksum`` is the SHA-256 of ``data``, and ``data``
    is the normal-form serialization of ``value``.

    Make one with :meth:`of` (serialize a value) or :meth:`parse` (bytes from elsewhere).
    """

    __slots__ = ("checksum", "data", "otype", "value")

    def __init__(
        self, otype: ObjectType, checksum: Checksum, data: bytes, value: MetadataValue, *, _token: object = None
    ) -> None:
        if _token is not _TOKEN:
            raise TypeError("VerifiedMetadata is made by VerifiedMetadata.of() or .parse(), not directly")
        self.otype = otype
        self.checksum = checksum
        self.data = data
        self.value = value

    @classmethod
    def of(cls, value: MetadataValue) -> VerifiedMetadata:
        """Serialize a valid value and hash the bytes once (values validate on construction)."""
        data = value.to_bytes()
        return cls(_TYPE_OF_VALUE[type(value)], _sha256(data), data, value, _token=_TOKEN)

    @classmethod
    def parse(cls, otype: ObjectType, data: bytes, expected: Checksum | None = None) -> VerifiedMetadata:
        """Hash ``data``, compare with ``expected``, and parse it strictly as ``otype``.

        Raises:
            ChecksumMismatch: if ``expected`` is given and the bytes hash differently.
            CorruptObject: if the bytes do not parse as ``otype`` (unsafe names, non-normal form,
                or a type that is not metadata).
        """
        data = bytes(data)
        csum = _sha256(data)
        if expected is not None and csum != expected:
            raise ChecksumMismatch(expected, csum, otype.value)
        try:
            value = _parse_value(otype, data)
        except FormatError as e:
            raise CorruptObject(csum, otype.value, str(e)) from e
        return cls(otype, csum, data, value, _token=_TOKEN)

    def __repr__(self) -> str:
        return f"VerifiedMetadata({self.otype.value} {self.checksum}, {len(self.data)} bytes)"


class VerifiedContent:
    """A content object held in memory: ``checksum`` is the SHA-256 of ``header``'s checksum
    prefix followed by ``content``.

    ``archived`` keeps the ``.filez`` bytes it was received as (proven to inflate to ``content``),
    so that an archive repository stores them without compressing again. Objects too large to
    hold go through ``Transaction.content_writer`` / ``stream_content`` instead, which verify
    while writing.
    """

    __slots__ = ("archived", "checksum", "content", "header")

    def __init__(
        self,
        header: FileHeader,
        checksum: Checksum,
        content: bytes,
        archived: bytes | None = None,
        *,
        _token: object = None,
    ) -> None:
        if _token is not _TOKEN:
            raise TypeError("VerifiedContent is made by VerifiedContent.of() or .parse_*(), not directly")
        self.header = header
        self.checksum = checksum
        self.content = content
        self.archived = archived

    @property
    def size(self) -> int:
        """The uncompressed content size."""
        return len(self.content)

    @classmethod
    def of(cls, header: FileHeader, content: bytes = b"", expected: Checksum | None = None) -> VerifiedContent:
        """Hash a header and its content once (a symlink has no content).

        Raises:
            ChecksumMismatch: if ``expected`` is given and differs.
            FormatError: if a symlink header is given content.
        """
        if header.is_symlink and content:
            raise FormatError("symlink object has content")
        content = bytes(content)
        csum = header.checksum(content)
        if expected is not None and csum != expected:
            raise ChecksumMismatch(expected, csum, "file")
        return cls(header, csum, content, _token=_TOKEN)

    @classmethod
    def parse_stream(cls, data: bytes, expected: Checksum) -> VerifiedContent:
        """Verify a checksum stream ``u32be(len(H)) 00000000 H content`` (a bare-family source).

        Raises:
            CorruptObject: if the header does not parse.
            ChecksumMismatch: if the object hashes to something else.
        """
        view = memoryview(data)
        try:
            end = stream_header_length(view)
            if len(view) < end:
                raise FormatError("content stream header is truncated")
            header = FileHeader.from_bytes(bytes(view[8:end]))
            content = bytes(view[end:])
            if header.is_symlink and content:
                raise FormatError("symlink object has a body")
        except FormatError as e:
            raise CorruptObject(expected, "file", str(e)) from e
        actual = header.checksum(content)
        if actual != expected:
            raise ChecksumMismatch(expected, actual, "file")
        return cls(header, actual, content, _token=_TOKEN)

    @classmethod
    def parse_archived(
        cls,
        filez: bytes,
        expected: Checksum,
        decompressobj: DecompressorFactory = zlib.decompressobj,
        error_types: tuple[type[Exception], ...] = (zlib.error,),
    ) -> VerifiedContent:
        """Verify a ``.filez`` object: parse its header, inflate it, hash header and content.

        ``decompressobj``/``error_types`` may name a faster zlib-compatible inflater.

        Raises:
            CorruptObject: if it does not parse or inflate exactly to its declared size.
            ChecksumMismatch: if it hashes to something else.
        """
        filez = bytes(filez)
        try:
            parsed = decode_archive_header(filez)
            body = memoryview(filez)[parsed.body_offset :]
            if parsed.header.is_symlink:
                if len(body):
                    raise FormatError("symlink object has a body")
                content = b""
            else:
                content = inflate_whole(body, parsed.size, decompressobj, error_types)
        except FormatError as e:
            raise CorruptObject(expected, "file", str(e)) from e
        actual = parsed.header.checksum(content)
        if actual != expected:
            raise ChecksumMismatch(expected, actual, "file")
        return cls(parsed.header, actual, content, filez, _token=_TOKEN)

    def __repr__(self) -> str:
        return f"VerifiedContent({self.checksum}, {self.size} bytes)"
