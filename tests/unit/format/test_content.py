"""File-object framing: archive .filez and bare-user metadata, with ostree's vectors."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format import gvariant
from bootree.format.content import (
    ARCHIVE_HEADER_TYPE,
    bare_user_disk_mode,
    decode_archive_header,
    decode_bare_user_meta,
    deflate_chunks,
    encode_archive_header,
    encode_bare_user_meta,
    inflate_chunks,
    inflate_whole,
)
from bootree.format.objects import FileHeader, bswap32, bswap64

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


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4),
    st.sampled_from([0o100644, 0o100755, 0o104755, 0o120777]),
    st.lists(st.tuples(st.binary(min_size=1, max_size=8).filter(lambda b: b"\0" not in b), st.binary(max_size=300)),
             max_size=3, unique_by=lambda x: x[0]),
)
def test_encode_archive_header_equals_the_gvariant_encoding(
    sizes: list[int], mode: int, xattrs: list[tuple[bytes, bytes]]
) -> None:
    # The encoder splices the size into bytes cached per header: each size, for one header
    # asked again and again, must give exactly what the gvariant codec writes.
    header = FileHeader(7, 8, mode, 0, "t" if mode == 0o120777 else "", tuple(sorted(xattrs)))
    for size in sizes:
        z = gvariant.encode(
            ARCHIVE_HEADER_TYPE,
            (bswap64(size), bswap32(7), bswap32(8), bswap32(mode), 0, header.symlink_target,
             [(n + b"\0", v) for n, v in header.xattrs]),
        )
        assert encode_archive_header(header, size) == len(z).to_bytes(4, "big") + b"\0\0\0\0" + z


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0o100644, 0o100755, 0o104755, 0o120777]),
    st.lists(st.tuples(st.binary(min_size=1, max_size=8).filter(lambda b: b"\0" not in b), st.binary(max_size=8)),
             max_size=3, unique_by=lambda x: x[0]),
    st.integers(0, 40),
    st.integers(0, 255),
)
def test_decode_archive_header_agrees_with_codec(
    size: int, mode: int, xattrs: list[tuple[bytes, bytes]], pos: int, byte: int
) -> None:
    # Headers are decoded through a cache keyed on the bytes after the size field: every size
    # must still come out right, and damaged bytes must be judged as the codec judges them,
    # every time (failures are not cached).
    header = FileHeader(7, 8, mode, 0, "t" if mode == 0o120777 else "", tuple(sorted(xattrs)))
    good = encode_archive_header(header, size)
    parsed = decode_archive_header(good)
    assert (parsed.header, parsed.size, parsed.body_offset) == (header, size, len(good))
    bad = bytearray(good)
    i = 16 + pos % max(1, len(bad) - 16)
    bad[i] = byte
    expected = _reference_decode(bytes(bad))
    for _ in range(2):
        try:
            parsed = decode_archive_header(bytes(bad))
            got: object = (parsed.header, parsed.size, parsed.body_offset)
        except FormatError:
            got = "rejected"
        assert got == expected


def _reference_decode(data: bytes) -> object:
    """The archive header decoded by the generic codec alone, without the cache."""
    hlen = int.from_bytes(data[:4], "big")
    try:
        if len(data) < 8 + hlen or data[4:8] != bytes(4):
            raise FormatError("truncated")
        size, uid, gid, mode, rdev, target, xattrs = gvariant.decode(ARCHIVE_HEADER_TYPE, data[8 : 8 + hlen])
        if any(not n.endswith(b"\0") for n, _ in xattrs):
            raise FormatError("xattr name")
        xa = tuple((n[:-1], v) for n, v in xattrs)
        header = FileHeader(bswap32(uid), bswap32(gid), bswap32(mode), bswap32(rdev), target, xa)
    except FormatError:
        return "rejected"
    return (header, bswap64(size), 8 + hlen)


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


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(-3, 3), st.integers(0, 4000), st.integers(0, 255), st.booleans())
def test_inflate_whole_agrees_with_inflate_chunks(data: bytes, size_delta: int, pos: int, byte: int, damage: bool) -> None:
    # The whole-body inflater is the chunked one's fast path: same bytes, same verdicts
    # (a wrong declared size, a damaged or truncated body, trailing data).
    body = bytearray(b"".join(deflate_chunks([data])))
    if damage:
        body[pos % len(body)] = byte
    size = max(0, len(data) + size_delta)

    def verdict(f: object) -> object:
        try:
            return f()  # type: ignore[operator]
        except FormatError as e:
            return str(e)

    assert verdict(lambda: inflate_whole(bytes(body), size)) == verdict(
        lambda: b"".join(inflate_chunks([bytes(body)], size))
    )
