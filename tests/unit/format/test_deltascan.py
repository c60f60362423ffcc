"""Reading a superblock file piece by piece (inline parts left in the file), against the whole decode."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import DeltaFormatError
from bootree.format.checksum import Checksum
from bootree.format.delta import (
    BIG_ENDIAN,
    FallbackEntry,
    PartEntry,
    PartPayload,
    SignedSuperblock,
    Superblock,
    decode_part,
    encode_part,
)
from bootree.format.deltapart import decode_part_stream, parse_part_payload
from bootree.format.deltascan import ScannedSuperblock, scan_superblock
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit, ObjectType

B = Checksum("2315c397ed66eb7f744d99dbc3edd99051e62a31ad9d2a6cc38439653a9fc0ae")
C = Checksum("ea6636f6019abdb8556d274c58ab6a5b8e6d689a2a78f3ea62c288d19958eda8")
TREE = Checksum("e2abaf5012d82badc138e734e5d7fc17f782ff4d959053407446082ec81f9a77")
META = Checksum("446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488")


def _part(seed: int, n: int) -> bytes:
    payload = random.Random(seed).randbytes(n)
    return encode_part(PartPayload(((0, 0, 0o100644),), ((),), payload, b"\x01\x02"))


def _file(*, endianness: int = ord("l"), sizes: tuple[int, ...] = (3000, 70_000)) -> tuple[bytes, list[bytes]]:
    parts = [_part(i, n) for i, n in enumerate(sizes)]
    entries = [
        PartEntry(hashlib.sha256(p).digest(), len(p), 4 * len(p), ((ObjectType.FILE, META),)) for p in parts
    ]
    commit = Commit(root_tree=TREE, root_meta=META, timestamp=1700000000, subject="s").to_bytes()
    sb = Superblock.build(
        to_commit=C, commit=commit, parts=entries, from_commit=B, timestamp=1700000100,
        fallbacks=[FallbackEntry(ObjectType.FILE, TREE, 10, 20)],
        user_metadata=[("bootree.delta-format", Variant("u", 1)), ("note", Variant("s", "x" * 300))],
        inline_parts=parts, commitmeta=b"", endianness=endianness,
    )
    return sb.to_bytes(), parts


def _scan(data: bytes) -> ScannedSuperblock:
    return scan_superblock(lambda off, n: data[off : off + n], len(data))


@pytest.mark.parametrize("endianness", [ord("l"), BIG_ENDIAN])
def test_scan_equals_the_whole_decode_without_the_parts(endianness: int) -> None:
    data, parts = _file(endianness=endianness)
    whole = Superblock.from_bytes(data)
    scanned = _scan(data)
    assert not scanned.signed and (scanned.inner_offset, scanned.inner_size) == (0, len(data))
    inline_keys = {whole.name.part_relpath(i) for i in range(len(parts))}
    assert scanned.superblock.metadata == tuple((k, v) for k, v in whole.metadata if k not in inline_keys)
    for field in ("to_commit", "commit", "parts", "fallbacks", "from_commit", "timestamp", "endianness",
                  "endianness_source", "commitmeta"):
        assert getattr(scanned.superblock, field) == getattr(whole, field), field
    for i, part in enumerate(parts):
        off, size = scanned.inline[i]
        assert data[off : off + size] == part == whole.inline_part(i)


def test_scan_of_a_signed_file_finds_the_plain_superblock_inside() -> None:
    plain, parts = _file()
    signed = SignedSuperblock(plain, (("ostree.sign.ed25519", Variant("aay", [b"s" * 64])),)).to_bytes()
    scanned = _scan(signed)
    assert scanned.signed
    assert signed[scanned.inner_offset : scanned.inner_offset + scanned.inner_size] == plain
    off, size = scanned.inline[1]
    assert signed[off : off + size] == parts[1]
    unsigned = SignedSuperblock(plain, (("other", Variant("s", "x")),)).to_bytes()
    assert not _scan(unsigned).signed  # the container without an ostree.sign.* key


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_truncated_files_are_refused_with_a_typed_error(data: st.DataObject) -> None:
    whole, _parts = _file(sizes=(200, 300))
    cut = data.draw(st.integers(0, len(whole) - 1))
    # the file ends early: every read past ``cut`` comes back short, as os.pread returns it
    with pytest.raises(DeltaFormatError):
        scan_superblock(lambda off, n: whole[off : min(off + n, cut)], len(whole))
    with pytest.raises(DeltaFormatError):
        _scan(whole[:cut])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_files_parse_or_are_refused_typed(data: st.DataObject) -> None:
    whole, _parts = _file(sizes=(100, 150))
    raw = bytearray(whole)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        scanned = _scan(bytes(raw))
    except DeltaFormatError:
        return
    for off, size in scanned.inline.values():  # what it found lies inside the file
        assert 0 <= off and off + size <= len(raw)


def test_offsets_past_the_end_are_refused() -> None:
    data, _parts = _file()
    # The last framing offset of the superblock tuple is the end of its metadata (its inline parts).
    w = 4 if len(data) > 0xFFFF else 2
    bad = data[:-w] + (len(data) + 10).to_bytes(w, "little")
    with pytest.raises(DeltaFormatError, match="out of range"):
        _scan(bad)
    with pytest.raises(DeltaFormatError, match="truncated"):  # the file is shorter than its size says
        scan_superblock(lambda off, n: data[off : off + n], len(data) + 100)


def test_part_stream_equals_the_whole_decode() -> None:
    part = _part(7, 300_000)
    whole = decode_part(part, max_size=1 << 22)
    streamed = decode_part_stream((part[i : i + 4096] for i in range(0, len(part), 4096)), max_size=1 << 22)
    assert bytes(streamed.payload) == bytes(whole.payload) and streamed.operations == whole.operations
    assert streamed.modes == whole.modes and streamed.xattrs == whole.xattrs
    with pytest.raises(DeltaFormatError, match="limit"):
        decode_part_stream(iter([part]), max_size=100_000)
    with pytest.raises(DeltaFormatError, match="truncated"):
        decode_part_stream(iter([part[:-20]]), max_size=1 << 22)
    with pytest.raises(DeltaFormatError, match="trailing"):
        decode_part_stream(iter([part, b"junk"]), max_size=1 << 22)
    with pytest.raises(DeltaFormatError, match="compression"):
        decode_part_stream(iter([b"z" + part[1:]]), max_size=1 << 22)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_part_framing_parser_is_typed(raw: bytes) -> None:
    try:
        parse_part_payload(raw)
    except DeltaFormatError:
        pass
