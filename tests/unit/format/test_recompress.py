"""Recompression codecs (gzip, zlib, xz): found parameters always rebuild the exact bytes.

Properties: for any contents and any parameters the compressor supports, the finder recovers
parameters that reproduce the stream bit for bit; for any byte string at all, the finder either
says ``None`` or returns parameters that reproduce it (it never claims a wrong match).
"""

from __future__ import annotations

import gzip
import lzma
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.errors import DeltaFormatError
from bootree.format.recompress import (
    GzipParams,
    XzParams,
    ZlibParams,
    ZstdParams,
    codec_of,
    find_gzip_params,
    find_xz_params,
    find_zlib_params,
    gzip_compress,
    parse_params,
    unxz,
    unzlib,
    xz_compress,
    zlib_compress,
)

contents = st.one_of(
    st.binary(max_size=4000),
    st.lists(st.sampled_from([b"alpha ", b"beta\n", b"\0" * 17, b"gamma delta "]), max_size=400).map(b"".join),
)
_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(contents, st.integers(0, 9), st.sampled_from([9, 12, 15]), st.sampled_from([8, 9]))
def test_zlib_params_are_recovered(inner: bytes, level: int, wbits: int, mem: int) -> None:
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, mem)
    data = c.compress(inner) + c.flush()
    assert codec_of(data) == "zlib"
    params = find_zlib_params(data, inner)
    assert params is not None and zlib_compress(inner, params) == data
    assert unzlib(data, max_size=len(inner)) == inner
    assert parse_params(params.to_bytes()) == params


@_SETTINGS
@given(contents, st.sampled_from([0, 1, 6, 9]), st.booleans(),
       st.sampled_from([lzma.CHECK_CRC32, lzma.CHECK_CRC64, lzma.CHECK_NONE]), st.sampled_from([1 << 16, 1 << 20, 3 << 20]))
def test_xz_params_are_recovered(inner: bytes, preset: int, extreme: bool, check: int, dict_size: int) -> None:
    filters = [{"id": lzma.FILTER_LZMA2, "preset": preset | (lzma.PRESET_EXTREME if extreme else 0), "dict_size": dict_size}]
    data = lzma.compress(inner, format=lzma.FORMAT_XZ, check=check, filters=filters)
    assert codec_of(data) == "xz"
    params = find_xz_params(data, inner)
    assert params is not None and xz_compress(inner, params) == data
    assert unxz(data, max_size=len(inner)) == inner
    assert parse_params(params.to_bytes()) == params


@_SETTINGS
@given(contents, st.integers(1, 9))
def test_gzip_params_are_recovered(inner: bytes, level: int) -> None:
    data = gzip.compress(inner, compresslevel=level, mtime=0)
    params = find_gzip_params(data, inner)
    assert params is not None and gzip_compress(inner, params) == data


@_SETTINGS
@given(contents, st.integers(0, 9), st.integers(0, 10_000), st.integers(1, 255))
def test_finders_never_claim_a_wrong_match(inner: bytes, level: int, pos: int, flip: int) -> None:
    """A mutated stream (or one of other contents) is rebuilt exactly or not at all."""
    for data, find, rebuild in (
        (zlib.compress(inner, level), find_zlib_params, zlib_compress),
        (lzma.compress(inner, format=lzma.FORMAT_XZ), find_xz_params, xz_compress),
        (gzip.compress(inner, compresslevel=max(level, 1), mtime=0), find_gzip_params, gzip_compress),
    ):
        mutated = bytearray(data)
        mutated[pos % len(mutated)] ^= flip
        for candidate in (bytes(mutated), data):
            for claimed in (inner, inner + b"x"):
                params = find(candidate, claimed)  # type: ignore[operator]
                if params is not None:
                    assert rebuild(claimed, params) == candidate  # type: ignore[operator]


def test_multithreaded_xz_is_not_claimed() -> None:
    """Block sizes in the block header (xz -T): liblzma's one-thread encoder cannot rebuild it."""
    data = bytearray(lzma.compress(b"x" * 1000, format=lzma.FORMAT_XZ))
    data[13] |= 0x40  # "compressed size present"
    assert find_xz_params(bytes(data), b"x" * 1000) is None


@pytest.mark.parametrize("blob", [b"", b"zl1", b"zl1\x0a\x0f\x08\x00", b"xz1" + bytes(7), b"zs1\x7f\x00\x00\x00", b"??1abcd"])
def test_bad_parameter_blobs_are_refused(blob: bytes) -> None:
    with pytest.raises(DeltaFormatError):
        parse_params(blob)


def test_parameter_blobs_round_trip() -> None:
    for params in (ZlibParams(9, 15, 8), XzParams(6, True, lzma.CHECK_CRC32, 1 << 20), ZstdParams(-3, True, False, 1),
                   GzipParams(b"\x1f\x8b\x08\x00" + bytes(6), 6)):
        assert parse_params(params.to_bytes()) == params
