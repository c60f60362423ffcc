"""Verified values: made only by factories that hash (and parse) what they vouch for."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootree.errors import ChecksumMismatch, CorruptObject
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming, ContentStreamDecoder, deflate_chunks, encode_archive_header
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader
from bootree.format.verified import VerifiedContent, VerifiedMetadata

META = DirMeta(0, 0, 0o40755)
HEADER = FileHeader(0, 0, 0o100644)
LINK = FileHeader(0, 0, 0o120777, 0, "target")


def _sha(data: bytes) -> Checksum:
    return Checksum(hashlib.sha256(data).hexdigest())


def _filez(header: FileHeader, content: bytes) -> bytes:
    body = b"" if header.is_symlink else b"".join(deflate_chunks([content]))
    return encode_archive_header(header, len(content)) + body


def test_constructors_refuse_callers_without_the_token() -> None:
    with pytest.raises(TypeError):
        VerifiedMetadata(ObjectType.DIR_META, _sha(b""), b"", META)
    with pytest.raises(TypeError):
        VerifiedContent(HEADER, HEADER.checksum(b""), b"")


@pytest.mark.parametrize("value", [META, DirTree(), Commit(root_tree=_sha(b"t"), root_meta=_sha(b"m"))])
def test_of_serializes_and_hashes_once(value: Commit | DirTree | DirMeta) -> None:
    v = VerifiedMetadata.of(value)
    assert v.data == value.to_bytes()
    assert v.checksum == _sha(v.data)
    assert v.value is value
    assert VerifiedMetadata.parse(v.otype, v.data, v.checksum).value == value


def test_parse_rejects_wrong_checksum_unparseable_bytes_and_non_metadata() -> None:
    data = META.to_bytes()
    with pytest.raises(ChecksumMismatch):
        VerifiedMetadata.parse(ObjectType.DIR_META, data, _sha(b"other"))
    with pytest.raises(CorruptObject):
        VerifiedMetadata.parse(ObjectType.DIR_TREE, b"\x01garbage")
    with pytest.raises(CorruptObject):
        VerifiedMetadata.parse(ObjectType.DIR_META, b"")  # a zero-length dirmeta is never valid
    with pytest.raises(CorruptObject):
        VerifiedMetadata.parse(ObjectType.FILE, data)


def test_content_of_and_parse_agree() -> None:
    content = b"hello" * 100
    v = VerifiedContent.of(HEADER, content)
    assert v.checksum == HEADER.checksum(content) and v.size == 500 and v.archived is None
    stream = HEADER.checksum_prefix() + content
    assert VerifiedContent.parse_stream(stream, v.checksum).content == content
    filez = _filez(HEADER, content)
    a = VerifiedContent.parse_archived(filez, v.checksum)
    assert a.content == content and a.archived == filez
    with pytest.raises(ChecksumMismatch):
        VerifiedContent.of(HEADER, content, HEADER.checksum(b"x"))
    with pytest.raises(ChecksumMismatch):
        VerifiedContent.parse_stream(stream[:-1], v.checksum)
    with pytest.raises(CorruptObject):
        VerifiedContent.parse_archived(filez[:-1], v.checksum)
    with pytest.raises(CorruptObject):
        VerifiedContent.parse_archived(b"", v.checksum)


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=700), st.booleans())
def test_stream_decoder_any_chunking(content: bytes, step: int, archived: bool) -> None:
    framing = ContentFraming.ARCHIVED if archived else ContentFraming.STREAM
    data = _filez(HEADER, content) if archived else HEADER.checksum_prefix() + content
    dec = ContentStreamDecoder(framing)
    out = []
    for i in range(0, len(data), step):
        out += dec.feed(data[i : i + step])
    out += dec.finish()
    assert dec.header == HEADER
    assert b"".join(out) == content


@given(st.binary(max_size=200), st.binary(min_size=1, max_size=50))
def test_stream_decoder_never_crashes_on_garbage(data: bytes, tail: bytes) -> None:
    for framing in ContentFraming:
        dec = ContentStreamDecoder(framing)
        try:
            dec.feed(data)
            dec.feed(tail)
            dec.finish()
        except (CorruptObject, ChecksumMismatch):
            pass
        except Exception as e:  # only typed format errors
            from bootree.errors import FormatError

            assert isinstance(e, FormatError), repr(e)


def test_decoder_rejects_truncation_trailing_data_and_symlink_bodies() -> None:
    from bootree.errors import FormatError

    filez = _filez(HEADER, b"abc" * 50)
    for bad in (filez[:-1], filez + b"x", filez[:10]):
        dec = ContentStreamDecoder(ContentFraming.ARCHIVED)
        with pytest.raises(FormatError):
            dec.feed(bad)
            dec.finish()
    dec = ContentStreamDecoder(ContentFraming.STREAM)
    with pytest.raises(FormatError):
        dec.feed(LINK.checksum_prefix() + b"body")
    stored = encode_archive_header(HEADER, 3) + zlib.compress(b"abc")  # zlib framing, not raw deflate
    with pytest.raises(FormatError):
        d = ContentStreamDecoder(ContentFraming.ARCHIVED)
        d.feed(stored)
        d.finish()
