"""Cutting a gzip object for a parallel rebuild: the pieces rebuild it bit for bit, or it is
rebuilt in one piece; a wrong segment list never passes as the object."""

from __future__ import annotations

import gzip
import zlib

import pytest

from bootree.delta import deflateblocks
from bootree.delta.recompress import find_params, recompress
from bootree.format.recompress import GzipParams, gunzip
from delta_builders import initramfs_like


def _contents(size: int) -> bytes:
    return initramfs_like(size)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deflateblocks, "_MIN_SPLIT", 1 << 18)
    monkeypatch.setattr(deflateblocks, "_PIECE", 1 << 18)


@pytest.mark.parametrize("level", [6, 9])
def test_a_gzip_object_is_cut_into_pieces_that_rebuild_it(small_pieces: None, level: int) -> None:
    inner = _contents(3 << 20)
    data = gzip.compress(inner, compresslevel=level, mtime=0)
    params = find_params(data, inner)
    assert isinstance(params, GzipParams) and len(params.segments) >= 3
    assert all(bit % 8 == 0 for _off, bit in params.segments)
    assert recompress(inner, params) == data


def test_block_boundaries_are_increasing_and_inside_the_stream() -> None:
    inner = _contents(1 << 20)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(inner) + c.flush()
    blocks = deflateblocks.block_boundaries(body)
    assert blocks is not None and len(blocks) > 3
    assert blocks == sorted(blocks) and blocks[-1][0] < len(inner) and blocks[-1][1] < 8 * len(body)
    assert deflateblocks.block_boundaries(b"\xff" * 64) is None  # not a deflate stream


def test_a_wrong_segment_list_does_not_rebuild_the_object(small_pieces: None) -> None:
    inner = _contents(2 << 20)
    data = gzip.compress(inner, compresslevel=6, mtime=0)
    params = find_params(data, inner)
    assert isinstance(params, GzipParams) and params.segments
    (off, bit), *rest = params.segments
    for wrong in ((off + 1, bit), (off, bit + 8)):
        bad = GzipParams(params.header, params.level, params.mem_level, params.strategy, (wrong, *rest))
        assert recompress(inner, bad) != data


def test_small_objects_stay_in_one_piece() -> None:
    inner = _contents(100_000)
    data = gzip.compress(inner, compresslevel=6, mtime=0)
    params = find_params(data, inner)
    assert isinstance(params, GzipParams) and not params.segments
    assert recompress(inner, params) == data and gunzip(data, max_size=len(inner)) == inner
