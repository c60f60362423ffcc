"""Static-delta codec: names, superblock, parts, indexes (bytes as libostree 2022.7 writes them)."""

from __future__ import annotations

import hashlib
import lzma

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import DeltaFormatError, InvalidChecksum
from bootree.format import gvariant
from bootree.format.checksum import Checksum
from bootree.format.delta import (
    BIG_ENDIAN,
    SUPERBLOCK_TYPE,
    Compression,
    DeltaName,
    FallbackEntry,
    PartEntry,
    PartPayload,
    PartTables,
    Superblock,
    checksum_from_b64,
    checksum_to_b64,
    decode_delta_index,
    decode_part,
    delta_index_relpath,
    encode_delta_index,
    encode_part,
)
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit, ObjectType

# From delta-vectors.expected.txt (real ostree 2022.7).
B = Checksum("2315c397ed66eb7f744d99dbc3edd99051e62a31ad9d2a6cc38439653a9fc0ae")
C = Checksum("ea6636f6019abdb8556d274c58ab6a5b8e6d689a2a78f3ea62c288d19958eda8")
TREE = Checksum("e2abaf5012d82badc138e734e5d7fc17f782ff4d959053407446082ec81f9a77")
META = Checksum("446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488")


def test_names_and_paths_match_ostree() -> None:
    assert checksum_to_b64(C) == "6mY29gGavbhVbSdMWKtqW45taJoqePPqYsKI0ZlY7ag"
    assert DeltaName(None, C).relpath == "deltas/6m/Y29gGavbhVbSdMWKtqW45taJoqePPqYsKI0ZlY7ag"
    name = DeltaName(B, C)
    assert name.relpath == "deltas/Ix/XDl+1m6390TZnbw+3ZkFHmKjGtnSpsw4Q5ZTqfwK4-6mY29gGavbhVbSdMWKtqW45taJoqePPqYsKI0ZlY7ag"
    assert str(name) == f"{B}-{C}" and DeltaName.parse(str(name)) == name
    assert DeltaName.parse(C) == DeltaName(None, C)
    prefix, rest = name.relpath.split("/")[1:]
    assert DeltaName.from_relpath(prefix, rest) == name
    assert name.part_relpath(3).endswith("/3") and name.superblock_relpath.endswith("/superblock")
    assert delta_index_relpath(C) == "delta-indexes/6m/Y29gGavbhVbSdMWKtqW45taJoqePPqYsKI0ZlY7ag.index"


@given(st.binary(min_size=32, max_size=32))
def test_b64_round_trip(raw: bytes) -> None:
    csum = Checksum(raw.hex())
    text = checksum_to_b64(csum)
    assert len(text) == 43 and "/" not in text and "=" not in text
    assert checksum_from_b64(text) == csum


@pytest.mark.parametrize("bad", ["", "x" * 42, "!" * 43])
def test_bad_b64_is_typed(bad: str) -> None:
    with pytest.raises(InvalidChecksum):
        checksum_from_b64(bad)


def _commit() -> bytes:
    return Commit(root_tree=TREE, root_meta=META, timestamp=1700000000, subject="s").to_bytes()


def _superblock(**kw: object) -> Superblock:
    part = PartEntry(hashlib.sha256(b"p").digest(), 1234, 56789, ((ObjectType.DIR_TREE, TREE), (ObjectType.FILE, META)))
    fb = FallbackEntry(ObjectType.FILE, B, 5_000_001, 9_000_000)
    args: dict[str, object] = {
        "to_commit": C,
        "commit": _commit(),
        "parts": [part],
        "fallbacks": [fb],
        "from_commit": B,
        "timestamp": 1796117737,
    }
    args.update(kw)
    return Superblock.build(**args)  # type: ignore[arg-type]


def test_superblock_round_trip_and_layout() -> None:
    sb = _superblock(user_metadata=[("flatpak", Variant("s", "x"))], commitmeta=gvariant.encode("a{sv}", []))
    data = sb.to_bytes()
    back = Superblock.from_bytes(data)
    assert back == sb and back.to_bytes() == data
    meta, ts, _frm, _to, commit, deps, parts, fallbacks = gvariant.decode(SUPERBLOCK_TYPE, data)
    assert [k for k, _ in meta] == ["flatpak", "ostree.endianness", f"{sb.name.relpath}/commitmeta"]
    assert ts.to_bytes(8, "little") == (1796117737).to_bytes(8, "big")  # timestamp is big-endian
    assert parts[0][2] == 1234 and fallbacks[0][2] == 5_000_001  # little-endian delta: stored as is
    assert deps == b"" and gvariant.encode(gvariant_commit_type(), commit) == _commit()
    assert back.commitmeta == gvariant.encode("a{sv}", []) and back.total_size == 1234 + 5_000_001


def gvariant_commit_type() -> str:
    from bootree.format.objects import COMMIT_TYPE

    return COMMIT_TYPE


def test_big_endian_superblock_swaps_sizes() -> None:
    sb = _superblock(endianness=BIG_ENDIAN)
    data = sb.to_bytes()
    _m, _t, _f, _to, _c, _d, parts, _fb = gvariant.decode(SUPERBLOCK_TYPE, data)
    assert parts[0][2] == int.from_bytes((1234).to_bytes(8, "big"), "little")
    assert Superblock.from_bytes(data).parts[0].size == 1234


def test_inline_parts_and_scratch() -> None:
    part_file = encode_part(PartPayload((), (), b"", b""), Compression.NONE)
    sb = _superblock(from_commit=None, inline_parts=[part_file])
    back = Superblock.from_bytes(sb.to_bytes())
    assert back.from_commit is None and back.inline_part(0) == part_file and back.inline_part(1) is None


def test_superblock_garbage_is_typed() -> None:
    data = _superblock().to_bytes()
    for bad in (b"", data[:-3], data[:40], b"\xff" * 200):
        with pytest.raises(DeltaFormatError):
            Superblock.from_bytes(bad)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_superblock_mutations_never_crash(data: st.DataObject) -> None:
    raw = bytearray(_superblock().to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        Superblock.from_bytes(bytes(raw))
    except DeltaFormatError:
        pass


@pytest.mark.parametrize("comp", [Compression.NONE, Compression.XZ])
def test_part_round_trip(comp: int) -> None:
    tables = PartTables()
    assert tables.mode_index(0, 0, 0o100644) == 0 and tables.mode_index(0, 0, 0o100755) == 1
    assert tables.mode_index(0, 0, 0o100644) == 0
    assert tables.xattr_index(()) == 0 and tables.xattr_index(((b"user.a", b"1"),)) == 1
    part = PartPayload(tuple(tables.modes), tuple(tables.xattrs), b"payload" * 100, b"S\x00\x07")
    data = encode_part(part, comp)
    assert data[0] == comp
    assert decode_part(data, max_size=1 << 20) == part
    if comp == Compression.XZ:  # liblzma preset 8 with CRC64, as libostree
        assert lzma.decompress(data[1:]) == part.to_bytes()


def test_part_errors_are_typed() -> None:
    part = PartPayload(((0, 0, 0o100644),), ((),), b"x" * 5000, b"")
    data = encode_part(part)
    cases = [b"", b"z" + data[1:], data[: len(data) // 2], data[:-1], data + b"junk", b"\0" + b"\x01" * 9]
    for bad in cases:
        with pytest.raises(DeltaFormatError):
            decode_part(bad, max_size=1 << 20)
    with pytest.raises(DeltaFormatError, match="limit"):
        decode_part(data, max_size=100)  # a decompression bomb stops at the limit


def test_delta_index_round_trip() -> None:
    deltas = {f"{B}-{C}": b"\1" * 32, str(C): b"\2" * 32}
    data = encode_delta_index(deltas)
    assert decode_delta_index(data) == deltas
    with pytest.raises(DeltaFormatError):
        decode_delta_index(data[:-2])
