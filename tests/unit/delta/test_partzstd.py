"""zstd parts of bootree-format deltas: they round-trip, and a corrupt, truncated, padded,
unsized or oversized frame is refused with a DeltaFormatError (never another exception)."""

from __future__ import annotations

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.delta.partzstd import decode_any_part, decode_any_part_stream, encode_zstd_part_chunks
from bootree.errors import DeltaFormatError
from bootree.format.delta import PartPayload, encode_part

_PART = PartPayload(((0, 0, 0o100644), (1000, 1000, 0o100755)), ((), ((b"user.a", b"1"),)), b"payload " * 5000, b"ops")


def _same(a: PartPayload, b: PartPayload) -> bool:
    return (a.modes, a.xattrs, bytes(a.payload), a.operations) == (b.modes, b.xattrs, bytes(b.payload), b.operations)


def test_a_zstd_part_round_trips_whole_and_in_pieces() -> None:
    data = b"".join(encode_zstd_part_chunks(_PART))
    assert data[:1] == b"z" and len(data) < len(encode_part(_PART, 0))
    assert _same(decode_any_part(data, version=1, max_size=1 << 20), _PART)
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    assert _same(decode_any_part_stream(iter(pieces), version=1, max_size=1 << 20), _PART)
    assert data == b"".join(encode_zstd_part_chunks(_PART, threads=2))  # deterministic


def test_xz_and_uncompressed_parts_still_decode() -> None:
    for compression in (0, ord("x")):
        data = encode_part(_PART, compression)
        assert _same(decode_any_part(data, version=1, max_size=1 << 20), _PART)
        assert _same(decode_any_part_stream(iter([data[:3], data[3:]]), version=0, max_size=1 << 20), _PART)


def test_bad_zstd_parts_are_refused() -> None:
    data = b"".join(encode_zstd_part_chunks(_PART))
    comp = zstandard.ZstdCompressor().compressobj()
    unsized = b"z" + comp.compress(encode_part(_PART, 0)[1:]) + comp.flush()
    cases = {
        "compression 0x7a": (data, 0),  # a compatible part knows no zstd
        "truncated": (data[:-4], 1),
        "trailing": (data + b"\0", 1),
        "limit": (data, 1, 100),
        "declare its size": (unsized, 1),
        "corrupt|truncated": (data[:12] + b"\xff" * (len(data) - 12), 1),
    }
    for message, (blob, version, *limit) in cases.items():
        max_size = limit[0] if limit else 1 << 20
        with pytest.raises(DeltaFormatError, match=message):
            decode_any_part(blob, version=version, max_size=max_size)
        with pytest.raises(DeltaFormatError, match=message):
            decode_any_part_stream(iter([blob]), version=version, max_size=max_size)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 40))
def test_mutated_zstd_parts_fail_only_with_delta_format_errors(pos: int, value: int, cut: int) -> None:
    data = bytearray(b"".join(encode_zstd_part_chunks(_PART)))
    data[pos % len(data)] = value
    blob = bytes(data[: len(data) - cut])
    for decode in (
        lambda: decode_any_part(blob, version=1, max_size=1 << 20),
        lambda: decode_any_part_stream(iter([blob[:5], blob[5:]]), version=1, max_size=1 << 20),
    ):
        try:
            decode()
        except DeltaFormatError:
            pass
