"""File-object framing: archive .filez and bare-user metadata, with ostree's vectors."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format.content import (
    bare_user_disk_mode,
    decode_archive_header,
    decode_bare_user_meta,
    deflate_chunks,
    encode_archive_header,
    encode_bare_user_meta,
    inflate_chunks,
)
from bootree.format.objects import FileHeader

HELLO_FILEZ = bytes.fromhex(
    "0000001a00000000" "0000000000000006" "00000000" "00000000" "000081a4" "00000000" "00" "19" "cb48cdc9c9e70200"
)


def test_hello_filez_vector() -> None:
    header = FileHeader(0, 0, 0o100644)
    prefix = encode_archive_header(header, 6)
    body = b"".join(deflate_chunks([b"hello\n"]))
    assert prefix + body == HELLO_FILEZ  # stock zlib level 6 gives ostree's exact bytes
    parsed = decode_archive_header(HELLO_FILEZ)
    assert parsed.header == header and parsed.size == 6
    assert b"".join(inflate_chunks([HELLO_FILEZ[parsed.body_offset :]], 6)) == b"hello\n"


def test_empty_file_body_is_0300() -> None:
    assert b"".join(deflate_chunks([])) == b"\x03\x00"


def test_symlink_filez_has_no_body() -> None:
    link = FileHeader(0, 0, 0o120777, 0, "hello.txt")
    data = encode_archive_header(link, 0)
    assert data.hex() == "00000023" "00000000" + "00" * 8 + "00000000" "00000000" "0000a1ff" "00000000" + b"hello.txt\0".hex() + "22"


@pytest.mark.parametrize(
    ("body", "size", "why"),
    [
        (b"".join(deflate_chunks([b"hello\n"]))[:-2], 6, "truncated"),
        (b"".join(deflate_chunks([b"hello\n"])) + b"junk", 6, "trailing"),
        (b"".join(deflate_chunks([b"hello\n"])), 5, "too long"),
        (b"".join(deflate_chunks([b"hello\n"])), 7, "too short"),
        (b"\xff\xff\xff", 6, "garbage"),
    ],
)
def test_inflate_rejects(body: bytes, size: int, why: str) -> None:
    with pytest.raises(FormatError):
        b"".join(inflate_chunks([body], size))


def test_decode_archive_header_rejects_truncation() -> None:
    for n in (0, 4, 8, 20):
        with pytest.raises(FormatError):
            decode_archive_header(HELLO_FILEZ[:n])


def test_bare_user_meta_vector() -> None:
    h = FileHeader(0, 0, 0o100644)
    assert encode_bare_user_meta(h).hex() == "00000000" "00000000" "000081a4"
    f = FileHeader(0, 0, 0o100644, 0, "", ((b"user.a", b"one"), (b"user.b", b"2")))
    assert encode_bare_user_meta(f).hex() == "000000000000000000" "0081a4" "757365722e61006f6e6507757365722e620032070b14"
    assert decode_bare_user_meta(encode_bare_user_meta(f)) == (0, 0, 0o100644, f.xattrs)


def test_bare_user_disk_mode() -> None:
    assert bare_user_disk_mode(0o104755) == 0o755  # setuid dropped on disk
    assert bare_user_disk_mode(0o100200) == 0o600  # owner always readable
    assert bare_user_disk_mode(0o120777) == 0o644


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=5), st.integers(1, 9))
def test_deflate_inflate_roundtrip(chunks: list[bytes], level: int) -> None:
    data = b"".join(chunks)
    z = b"".join(deflate_chunks(chunks, level))
    assert zlib.decompress(z, -15) == data
    assert b"".join(inflate_chunks([z[i : i + 7] for i in range(0, len(z), 7)], len(data))) == data
