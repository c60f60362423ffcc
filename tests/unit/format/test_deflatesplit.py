"""Segmented deflate: pieces' bits join into one stream, and gz2 parameter blobs are checked.

Properties: joining pieces of any bit lengths gives the same bits as concatenating them as
integers; a piece compressed from the start with no bit limit is zlib's own raw deflate stream.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import DeltaFormatError
from bootree.format.deflatesplit import compress_segment, join_bits
from bootree.format.recompress import GzipParams, gzip_segment_jobs, parse_params

_HEADER = b"\x1f\x8b\x08\x00" + bytes(6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 40), st.integers(1, 41)), max_size=12))
def test_join_bits_concatenates_bit_strings(raw: list[tuple[int, int]]) -> None:
    pieces = []
    expected, used = 0, 0
    for value, count in raw:
        value &= (1 << count) - 1
        pieces.append((value.to_bytes((count + 7) // 8, "little"), count))
        expected |= value << used
        used += count
    assert join_bits(pieces) == expected.to_bytes((used + 7) // 8, "little")


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 9))
def test_a_whole_piece_is_zlibs_raw_deflate(inner: bytes, level: int) -> None:
    data, count = compress_segment(inner, level, 8, 0, 0, len(inner), None)
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    assert data == c.compress(inner) + c.flush() and count == 8 * len(data)


def test_a_piece_is_cut_at_its_bit_count() -> None:
    data, count = compress_segment(b"abc" * 1000, 6, 8, 0, 0, 3000, 13)
    assert count == 13 and len(data) == 2 and data[1] < 1 << 5


def test_segmented_parameters_round_trip_and_list_their_pieces() -> None:
    params = GzipParams(_HEADER, 6, 8, 0, ((100, 808), (250, 1600)))
    blob = params.to_bytes()
    assert blob.startswith(b"gz2") and parse_params(blob) == params
    assert gzip_segment_jobs(params, 400) == [(0, 100, 808), (100, 250, 792), (250, 400, None)]
    assert gzip_segment_jobs(GzipParams(_HEADER, 6), 400) == [(0, 400, None)]


@pytest.mark.parametrize("segments", [((100, 8), (100, 16)), ((100, 16), (200, 16)), ((0, 8),)])
def test_segment_lists_that_do_not_increase_are_refused(segments: tuple[tuple[int, int], ...]) -> None:
    blob = GzipParams(_HEADER, 6, 8, 0, segments).to_bytes()
    with pytest.raises(DeltaFormatError):
        parse_params(blob)


def test_truncated_and_oversized_segment_lists_are_refused() -> None:
    blob = GzipParams(_HEADER, 6, 8, 0, ((100, 8),)).to_bytes()
    with pytest.raises(DeltaFormatError):
        parse_params(blob[:20])
    with pytest.raises(DeltaFormatError):
        parse_params(blob[:6] + (10**6).to_bytes(4, "little") + blob[10:])
