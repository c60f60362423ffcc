"""Signed superblocks (``(taya{sv})``, magic OSTSGNDT) and the endianness guess of legacy deltas."""

from __future__ import annotations

import pytest

from bootree.errors import DeltaFormatError
from bootree.format import gvariant
from bootree.format.checksum import Checksum
from bootree.format.delta import (
    BIG_ENDIAN,
    LITTLE_ENDIAN,
    SIGNED_SUPERBLOCK_TYPE,
    PartEntry,
    SignedSuperblock,
    Superblock,
)
from bootree.format.gvariant import Variant
from bootree.format.objects import COMMIT_TYPE, ObjectType, bswap64

TO = Checksum("ab" * 32)
COMMIT = gvariant.encode(COMMIT_TYPE, ([], b"", [], "s", "", 0, b"\x11" * 32, b"\x22" * 32))


def _plain(**kw: object) -> Superblock:
    part = PartEntry(b"\x01" * 32, 1000, 4000, ((ObjectType.FILE, Checksum("cd" * 32)),))
    return Superblock.build(to_commit=TO, commit=COMMIT, parts=[part], timestamp=1700000000, **kw)  # type: ignore[arg-type]


def test_signed_superblock_round_trip_and_layout() -> None:
    plain = _plain().to_bytes()
    sigs = (("ostree.sign.ed25519", Variant("aay", [b"s" * 64])),)
    data = SignedSuperblock(plain, sigs).to_bytes()
    assert data[:8] == b"OSTSGNDT"  # the magic is stored big-endian: the file starts with it
    magic, inner, meta = gvariant.decode(SIGNED_SUPERBLOCK_TYPE, data)
    assert inner == plain and bswap64(magic) == 0x4F535453474E4454 and meta[0][0] == "ostree.sign.ed25519"
    back = SignedSuperblock.from_bytes(data)
    assert back is not None and back.superblock == plain and back.engines == ("ed25519",)
    assert back.signatures_of("ostree.sign.ed25519") == [b"s" * 64]
    assert Superblock.from_bytes(data) == Superblock.from_bytes(plain)  # readers unwrap it
    assert SignedSuperblock.from_bytes(plain) is None


def test_a_damaged_signed_container_is_refused() -> None:
    data = SignedSuperblock(_plain().to_bytes(), ()).to_bytes()
    with pytest.raises(DeltaFormatError):
        SignedSuperblock.from_bytes(data[:20])


def test_legacy_deltas_guess_their_endianness_as_libostree() -> None:
    sb = _plain()
    # A legacy delta: no ostree.endianness key. Native sizes read sensibly: "invalid" (no guess).
    legacy = Superblock(sb.to_commit, sb.commit, sb.parts, timestamp=sb.timestamp)
    back = Superblock.from_bytes(legacy.to_bytes())
    assert (back.endianness, back.endianness_source) == (LITTLE_ENDIAN, "invalid")
    assert back.parts[0].size == 1000
    # Written on a big-endian machine: the sizes read byte-swapped (size >> usize): "heuristic".
    swapped = Superblock(sb.to_commit, sb.commit, sb.parts, timestamp=sb.timestamp, endianness=BIG_ENDIAN)
    back = Superblock.from_bytes(swapped.to_bytes())
    assert (back.endianness, back.endianness_source) == (BIG_ENDIAN, "heuristic")
    assert back.parts[0].size == 1000 and back.parts[0].uncompressed_size == 4000
    assert Superblock.from_bytes(sb.to_bytes()).endianness_source == "key"
