"""One entry point for compression-aware deltas: take any supported compressed object apart and
rebuild it bit for bit (gzip, zlib, xz from :mod:`bootree.format.recompress`; zstd here).

Layer: delta (zstd needs the ``zstandard`` package, which the pure format layer may not use).
Generation calls :func:`find_params` on an object and its decompressed contents: the
parameters are used only when compressing those contents with them gives the object's exact
bytes back (checked here, at generation time); otherwise ``None`` and the object travels as
it is. The client calls :func:`recompress` and still verifies the object's checksum.
"""

from __future__ import annotations

import zstandard

from bootree.delta.deflateblocks import find_segments
from bootree.errors import DeltaFormatError
from bootree.format.recompress import (
    GzipParams,
    Params,
    XzParams,
    ZlibParams,
    ZstdParams,
    codec_of,
    find_xz_params,
    find_zlib_params,
    gunzip,
    gzip_candidates,
    gzip_compress,
    gzip_join,
    gzip_segment,
    gzip_segment_jobs,
    unxz,
    unzlib,
    xz_compress,
    zlib_compress,
    zstd_frame_flags,
)

__all__ = ["codec_of", "decompress", "find_params", "gzip_join", "gzip_segment", "gzip_segment_jobs", "recompress"]

#: zstd levels in the order tried: the zstd tool's default first, then its usual choices.
_ZSTD_LEVELS = (3, 19, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
#: Objects larger than this try only the first few levels (a level-19 try costs ~1 s per MB).
_ZSTD_FULL_SEARCH = 1 << 20
_ZSTD_QUICK_LEVELS = (3, 1, 2, 4, 5, 6)


def decompress(data: bytes, *, max_size: int) -> bytes:
    """The contents of a gzip, zlib, xz or zstd object (integrity checks of each format applied).

    Raises:
        DeltaFormatError: not one of them, corrupt, or larger than ``max_size``.
    """
    codec = codec_of(data)
    if codec == "gzip":
        return gunzip(data, max_size=max_size)
    if codec == "xz":
        return unxz(data, max_size=max_size)
    if codec == "zlib":
        return unzlib(data, max_size=max_size)
    if codec == "zstd":
        return _unzstd(data, max_size)
    raise DeltaFormatError("not a compressed object bootree can take apart")


def _unzstd(data: bytes, max_size: int) -> bytes:
    try:
        d = zstandard.ZstdDecompressor().decompressobj()
        out = d.decompress(data)
    except zstandard.ZstdError as exc:
        raise DeltaFormatError(f"corrupt zstd data: {exc}") from exc
    if len(out) > max_size:
        raise DeltaFormatError(f"zstd data larger than {max_size} bytes")
    if not d.eof or d.unused_data:
        raise DeltaFormatError("zstd data is truncated or has trailing data")
    return out


def _zstd_compress(inner: bytes, params: ZstdParams) -> bytes:
    c = zstandard.ZstdCompressor(
        level=params.level, write_checksum=params.checksum, write_content_size=params.content_size,
        threads=params.threads,
    )
    return c.compress(inner)


def _find_zstd(data: bytes, inner: bytes) -> ZstdParams | None:
    flags = zstd_frame_flags(data)
    if flags is None:
        return None
    checksum, content_size = flags
    levels = _ZSTD_LEVELS if len(inner) <= _ZSTD_FULL_SEARCH else _ZSTD_QUICK_LEVELS
    for level in levels:
        for threads in (0, 1):
            params = ZstdParams(level, checksum, content_size, threads)
            if _zstd_compress(inner, params) == data:
                return params
    return None


def find_params(data: bytes, inner: bytes) -> Params | None:
    """Parameters that rebuild ``data`` exactly from its contents ``inner``, or ``None``."""
    codec = codec_of(data)
    if codec == "gzip":
        for params in gzip_candidates(data, inner):
            # A large object is also cut into pieces the client compresses on both cores (the
            # whole rebuilt from the pieces is compared with ``data``, which checks the
            # parameters too); otherwise, or when no cut works, it is checked in one piece.
            split = find_segments(data, inner, params)
            if split is not None:
                return split
            if gzip_compress(inner, params) == data:
                return params
        return None
    if codec == "xz":
        return find_xz_params(data, inner)
    if codec == "zlib":
        return find_zlib_params(data, inner)
    if codec == "zstd":
        return _find_zstd(data, inner)
    return None


def recompress(inner: bytes, params: Params) -> bytes:
    """``inner`` compressed with ``params`` (the inverse of :func:`decompress` for that object).

    A gzip object with a segment list is compressed piece by piece (the applier runs the
    pieces on both cores instead: :func:`gzip_segment`, :func:`gzip_join`).
    """
    if isinstance(params, GzipParams):
        if params.segments:
            jobs = gzip_segment_jobs(params, len(inner))
            return gzip_join(inner, params, (gzip_segment(inner, params, job) for job in jobs))
        return gzip_compress(inner, params)
    if isinstance(params, ZlibParams):
        return zlib_compress(inner, params)
    if isinstance(params, XzParams):
        return xz_compress(inner, params)
    return _zstd_compress(inner, params)
