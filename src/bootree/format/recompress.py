"""Compressed objects taken apart and rebuilt bit for bit: the codecs behind compression-aware deltas.

Layer: format (pure; stdlib ``zlib`` and ``lzma`` only). A compressed object (an initramfs, a
``.gz`` manual page, a ``.ko.xz`` module, a zlib stream) changes completely when one byte of its
contents changes, so a delta of the compressed bytes is as large as the object. bootree's own
deltas diff the *uncompressed* contents instead and have the client compress the result again,
which works only if that compression reproduces the original bytes exactly. The finders
(:func:`find_gzip_params`, :func:`find_zlib_params`, :func:`find_xz_params`) try the parameters
the file's own headers suggest, compress and compare, and return ``None`` when none reproduces
it (then the object is shipped as it is). zstd frames use the same scheme; their parameters are
described here (:class:`ZstdParams`) and compressed by :mod:`bootree.delta.recompress`, since
zstd is not in the standard library.

Parameters travel in the delta as ``to_bytes()`` (a three-byte tag, then the values);
:func:`parse_params` reads any of them. zlib's and liblzma's output for given parameters is
deterministic; the client still verifies each object's checksum before publishing it.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bootree.errors import DeltaFormatError
from bootree.format.deflatesplit import compress_segment, join_bits, segment_count_ok

__all__ = [
    "GzipParams",
    "Params",
    "XzParams",
    "ZlibParams",
    "ZstdParams",
    "codec_of",
    "find_gzip_params",
    "find_xz_params",
    "find_zlib_params",
    "gunzip",
    "gzip_candidates",
    "gzip_compress",
    "gzip_join",
    "gzip_segment",
    "gzip_segment_jobs",
    "is_gzip",
    "parse_params",
    "unxz",
    "unzlib",
    "xz_compress",
    "zlib_compress",
]

_MAGIC = b"\x1f\x8b\x08"
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 2, 4, 8, 16
_TAG = b"gz1"
#: gzip parameters with a segment list (:mod:`bootree.format.deflatesplit`).
_SPLIT_TAG = b"gz2"
#: How much of the stream a candidate level must reproduce before it is tried on the whole.
_PROBE = 1 << 18


@dataclass(frozen=True, slots=True)
class GzipParams:
    """Everything needed to rebuild a one-member gzip file from its contents."""

    header: bytes
    level: int
    mem_level: int = 8
    strategy: int = zlib.Z_DEFAULT_STRATEGY
    #: Where the deflate stream may be cut into independently compressed pieces: (offset in
    #: the contents, bit offset in the deflate stream) of each piece after the first, both
    #: strictly increasing (:mod:`bootree.format.deflatesplit`; empty: one piece).
    segments: tuple[tuple[int, int], ...] = ()

    def to_bytes(self) -> bytes:
        """``gz1``, level, memory level, strategy, then the header bytes; with segments ``gz2``,
        the same three bytes, the segment count (u32 LE), each segment's two u64 LE, the header."""
        if not self.segments:
            return _TAG + bytes([self.level, self.mem_level, self.strategy]) + self.header
        table = b"".join(struct.pack("<QQ", off, bit) for off, bit in self.segments)
        return (
            _SPLIT_TAG + bytes([self.level, self.mem_level, self.strategy])
            + struct.pack("<I", len(self.segments)) + table + self.header
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> GzipParams:
        """Parse :meth:`to_bytes`.

        Raises:
            DeltaFormatError: for anything else.
        """
        if len(data) < 16 or not (data.startswith(_TAG) or data.startswith(_SPLIT_TAG)):
            raise DeltaFormatError("bad recompression parameters")
        level, mem, strategy = data[3], data[4], data[5]
        if not (0 <= level <= 9 and 1 <= mem <= 9 and strategy <= zlib.Z_FIXED):
            raise DeltaFormatError("bad recompression parameters")
        pos = 6
        segments: tuple[tuple[int, int], ...] = ()
        if data.startswith(_SPLIT_TAG):
            (count,) = struct.unpack_from("<I", data, 6)
            pos = 10 + 16 * count
            if not segment_count_ok(count) or count == 0 or len(data) < pos + 10:
                raise DeltaFormatError("bad gzip segment list")
            segments = tuple(struct.unpack_from("<QQ", data, 10 + 16 * i) for i in range(count))
            prev = (0, 0)
            for seg in segments:
                if seg[0] <= prev[0] or seg[1] <= prev[1]:
                    raise DeltaFormatError("gzip segment list is not strictly increasing")
                prev = seg
        header = bytes(data[pos:])
        _header_length(header)  # validates it
        return cls(header, level, mem, strategy, segments)


def is_gzip(data: bytes | memoryview) -> bool:
    """Whether ``data`` starts like a deflate gzip member."""
    return bytes(data[:3]) == _MAGIC


def _header_length(data: bytes | memoryview) -> int:
    if len(data) < 10 or bytes(data[:3]) != _MAGIC:
        raise DeltaFormatError("not a gzip member")
    flags = data[3]
    pos = 10
    if flags & _FEXTRA:
        if len(data) < pos + 2:
            raise DeltaFormatError("truncated gzip header")
        pos += 2 + struct.unpack_from("<H", data, pos)[0]
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            end = bytes(data[pos:]).find(b"\0")
            if end < 0:
                raise DeltaFormatError("truncated gzip header")
            pos += end + 1
    if flags & _FHCRC:
        pos += 2
    if pos > len(data):
        raise DeltaFormatError("truncated gzip header")
    return pos


def gunzip(data: bytes, *, max_size: int) -> bytes:
    """The contents of a one-member gzip file (CRC and size checked, nothing after it).

    Raises:
        DeltaFormatError: for corrupt data, more than one member or more than ``max_size`` bytes.
    """
    start = _header_length(data)
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(memoryview(data)[start:], max_size + 1)
    except zlib.error as exc:
        raise DeltaFormatError(f"corrupt gzip data: {exc}") from exc
    if len(out) > max_size or d.unconsumed_tail:
        raise DeltaFormatError(f"gzip data larger than {max_size} bytes")
    if not d.eof or len(d.unused_data) != 8:
        raise DeltaFormatError("gzip data is truncated or has trailing data")
    crc, isize = struct.unpack("<II", d.unused_data)
    if crc != zlib.crc32(out) or isize != len(out) & 0xFFFFFFFF:
        raise DeltaFormatError("gzip data fails its CRC or size check")
    return out


def gzip_compress(inner: bytes, params: GzipParams) -> bytes:
    """Rebuild the gzip file: header, raw deflate with the parameters, CRC32 and size."""
    c = zlib.compressobj(params.level, zlib.DEFLATED, -15, params.mem_level, params.strategy)
    body = c.compress(inner) + c.flush()
    return params.header + body + struct.pack("<II", zlib.crc32(inner), len(inner) & 0xFFFFFFFF)


def gzip_segment_jobs(params: GzipParams, size: int) -> list[tuple[int, int, int | None]]:
    """The pieces of a segmented gzip rebuild: ``(start, end, bit count)`` of each (``None``
    for the last, which runs to the end); one piece without segments."""
    bounds = [(0, 0), *params.segments]
    jobs: list[tuple[int, int, int | None]] = []
    for i, (start, bit) in enumerate(bounds):
        if i + 1 < len(bounds):
            end, next_bit = bounds[i + 1]
            jobs.append((start, end, next_bit - bit))
        else:
            jobs.append((start, size, None))
    return jobs


def gzip_segment(inner: bytes | memoryview, params: GzipParams, job: tuple[int, int, int | None]) -> tuple[bytes, int]:
    """One piece of :func:`gzip_segment_jobs`, compressed (:func:`compress_segment`)."""
    return compress_segment(inner, params.level, params.mem_level, params.strategy, *job)


def gzip_join(inner: bytes, params: GzipParams, pieces: Iterable[tuple[bytes, int]]) -> bytes:
    """The gzip file from its compressed pieces: header, the pieces' bits, CRC32 and size."""
    return params.header + join_bits(pieces) + struct.pack("<II", zlib.crc32(inner), len(inner) & 0xFFFFFFFF)


def _levels(xfl: int) -> list[int]:
    # gzip's XFL: 2 = best compression (level 9), 4 = fastest (level 1); 0 = anything else.
    first = {2: [9], 4: [1]}.get(xfl, [6])
    return first + [lv for lv in (6, 9, 5, 4, 3, 2, 1, 7, 8) if lv not in first]


def find_gzip_params(data: bytes, inner: bytes) -> GzipParams | None:
    """Parameters with which zlib reproduces ``data`` from ``inner`` exactly, or ``None``.

    Each candidate must first reproduce the start of the stream (cheap), and then the whole.
    """
    for params in gzip_candidates(data, inner):
        if gzip_compress(inner, params) == data:
            return params
    return None


def gzip_candidates(data: bytes, inner: bytes) -> Iterator[GzipParams]:
    """The parameters that reproduce the start of the gzip file ``data`` (the whole still has
    to be checked), most likely first."""
    try:
        start = _header_length(data)
    except DeltaFormatError:
        return
    header = bytes(data[:start])
    body = memoryview(data)[start:]
    probe_in = inner[:_PROBE]
    for level in _levels(data[8]):
        for strategy in (zlib.Z_DEFAULT_STRATEGY,):
            c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
            head = c.compress(probe_in)
            if len(inner) <= _PROBE:
                head += c.flush()
            if bytes(body[: len(head)]) == head:
                yield GzipParams(header, level, 8, strategy)


# --- zlib streams (RFC 1950) ------------------------------------------------------------------

_ZLIB_TAG = b"zl1"


@dataclass(frozen=True, slots=True)
class ZlibParams:
    """A zlib stream's deflate parameters: level, window bits, memory level, strategy."""

    level: int
    wbits: int = 15
    mem_level: int = 8
    strategy: int = zlib.Z_DEFAULT_STRATEGY

    def to_bytes(self) -> bytes:
        """``zl1``, level, window bits, memory level, strategy."""
        return _ZLIB_TAG + bytes([self.level, self.wbits, self.mem_level, self.strategy])

    @classmethod
    def from_bytes(cls, data: bytes) -> ZlibParams:
        """Parse :meth:`to_bytes`.

        Raises:
            DeltaFormatError: for anything else.
        """
        if len(data) != 7 or not data.startswith(_ZLIB_TAG):
            raise DeltaFormatError("bad zlib recompression parameters")
        level, wbits, mem, strategy = data[3:7]
        if not (0 <= level <= 9 and 9 <= wbits <= 15 and 1 <= mem <= 9 and strategy <= zlib.Z_FIXED):
            raise DeltaFormatError("bad zlib recompression parameters")
        return cls(level, wbits, mem, strategy)


def is_zlib(data: bytes | memoryview) -> bool:
    """Whether ``data`` starts like a zlib stream (deflate, a valid header check, no dictionary)."""
    if len(data) < 6:
        return False
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0 and not flg & 0x20


def unzlib(data: bytes, *, max_size: int) -> bytes:
    """The contents of a zlib stream (checksum checked, nothing after it).

    Raises:
        DeltaFormatError: corrupt, trailing data, or more than ``max_size`` bytes.
    """
    d = zlib.decompressobj(15)
    try:
        out = d.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise DeltaFormatError(f"corrupt zlib data: {exc}") from exc
    if len(out) > max_size or d.unconsumed_tail:
        raise DeltaFormatError(f"zlib data larger than {max_size} bytes")
    if not d.eof or d.unused_data:
        raise DeltaFormatError("zlib data is truncated or has trailing data")
    return out


def zlib_compress(inner: bytes, params: ZlibParams) -> bytes:
    """The zlib stream of ``inner`` with ``params``."""
    c = zlib.compressobj(params.level, zlib.DEFLATED, params.wbits, params.mem_level, params.strategy)
    return c.compress(inner) + c.flush()


def find_zlib_params(data: bytes, inner: bytes) -> ZlibParams | None:
    """Parameters with which zlib reproduces the stream ``data`` from ``inner`` exactly, or ``None``.

    The header names the window and the level class (FLEVEL); those levels are tried first,
    each on the start of the stream before the whole.
    """
    if not is_zlib(data):
        return None
    wbits = (data[0] >> 4) + 8
    flevel = data[1] >> 6
    first = {0: [1], 1: [2, 3, 4, 5], 2: [6], 3: [9, 7, 8]}[flevel]
    probe_in = inner[:_PROBE]
    for level in first + [lv for lv in range(10) if lv not in first]:
        for mem in (8, 9):
            params = ZlibParams(level, wbits, mem)
            c = zlib.compressobj(level, zlib.DEFLATED, wbits, mem, params.strategy)
            head = c.compress(probe_in)
            if len(inner) <= _PROBE:
                head += c.flush()
            if data[: len(head)] != head:
                continue
            if zlib_compress(inner, params) == data:
                return params
    return None


# --- xz streams -------------------------------------------------------------------------------

_XZ_MAGIC = b"\xfd7zXZ\x00"
_XZ_TAG = b"xz1"
_XZ_CHECKS = (lzma.CHECK_NONE, lzma.CHECK_CRC32, lzma.CHECK_CRC64, lzma.CHECK_SHA256)
#: Objects up to this size try every preset; larger ones only the two common ones (6, 9).
_XZ_FULL_SEARCH = 8 << 20


@dataclass(frozen=True, slots=True)
class XzParams:
    """One-block xz stream parameters as liblzma's single-threaded encoder takes them."""

    preset: int  # 0..9
    extreme: bool
    check: int
    dict_size: int

    def to_bytes(self) -> bytes:
        """``xz1``, preset, extreme, check, dictionary size (u32 little-endian)."""
        return _XZ_TAG + bytes([self.preset, int(self.extreme), self.check]) + struct.pack("<I", self.dict_size)

    @classmethod
    def from_bytes(cls, data: bytes) -> XzParams:
        """Parse :meth:`to_bytes`.

        Raises:
            DeltaFormatError: for anything else.
        """
        if len(data) != 10 or not data.startswith(_XZ_TAG):
            raise DeltaFormatError("bad xz recompression parameters")
        preset, extreme, check = data[3:6]
        (dict_size,) = struct.unpack_from("<I", data, 6)
        if preset > 9 or extreme > 1 or check not in _XZ_CHECKS or not 4096 <= dict_size <= 1 << 30:
            raise DeltaFormatError("bad xz recompression parameters")
        return cls(preset, bool(extreme), check, dict_size)


def is_xz(data: bytes | memoryview) -> bool:
    """Whether ``data`` starts like an xz stream."""
    return bytes(data[:6]) == _XZ_MAGIC


def unxz(data: bytes, *, max_size: int, what: str = "xz data") -> bytes:
    """The contents of a one-stream xz file (``what`` names it in errors).

    Raises:
        DeltaFormatError: corrupt, truncated, trailing data, or more than ``max_size`` bytes.
    """
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        out = d.decompress(data, max_length=max_size + 1)
    except lzma.LZMAError as exc:
        raise DeltaFormatError(f"corrupt xz data in {what}: {exc}") from exc
    if len(out) > max_size:
        raise DeltaFormatError(f"{what} decompresses to more than its limit of {max_size} bytes")
    if not d.eof:
        raise DeltaFormatError(f"truncated xz data in {what}")
    if d.unused_data:
        raise DeltaFormatError(f"trailing data after the xz stream of {what}")
    return out


def xz_compress(inner: bytes, params: XzParams) -> bytes:
    """The xz stream of ``inner`` with ``params`` (liblzma, one thread)."""
    preset = params.preset | (lzma.PRESET_EXTREME if params.extreme else 0)
    filters = [{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": params.dict_size}]
    return lzma.compress(inner, format=lzma.FORMAT_XZ, check=params.check, filters=filters)


def _xz_header(data: bytes) -> tuple[int, int] | None:
    """The check and LZMA2 dictionary size of a single-threaded xz stream's first block, or
    ``None`` (another filter chain, or block sizes in the header: a multi-threaded encoder's,
    which this library cannot reproduce)."""
    if len(data) < 24 or not is_xz(data) or data[6] != 0 or data[7] not in _XZ_CHECKS:
        return None
    check = data[7]
    if data[12] == 0:  # the index right away: no block (empty contents), any dictionary will do
        return check, 1 << 23
    size = (data[12] + 1) * 4
    if len(data) < 12 + size:
        return None
    flags = data[13]
    if flags & 0xC0 or flags & 0x03:  # sizes present, or more than one filter
        return None
    if data[14] != 0x21 or data[15] != 1:  # LZMA2 with one property byte
        return None
    bits = data[16]
    if bits > 40:
        return None
    dict_size = 0xFFFFFFFF if bits == 40 else (2 | (bits & 1)) << (bits // 2 + 11)
    return check, dict_size


def find_xz_params(data: bytes, inner: bytes) -> XzParams | None:
    """Parameters with which liblzma reproduces the xz stream ``data`` from ``inner``, or ``None``."""
    header = _xz_header(data)
    if header is None:
        return None
    check, dict_size = header
    presets = [6, 9] + ([p for p in range(10) if p not in (6, 9)] if len(inner) <= _XZ_FULL_SEARCH else [])
    for extreme in (False, True):
        for preset in presets:
            params = XzParams(preset, extreme, check, dict_size)
            if xz_compress(inner, params) == data:
                return params
    return None


# --- zstd frames (compressed by bootree.delta.recompress) ---------------------------------------

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_TAG = b"zs1"


@dataclass(frozen=True, slots=True)
class ZstdParams:
    """A zstd frame's compression parameters: level, checksum and content-size flags, threads
    (0: the single-threaded compressor; 1: the streaming worker the ``zstd`` tool uses)."""

    level: int
    checksum: bool
    content_size: bool
    threads: int = 0

    def to_bytes(self) -> bytes:
        """``zs1``, level (signed), checksum, content size, threads."""
        return _ZSTD_TAG + struct.pack("<b", self.level) + bytes([int(self.checksum), int(self.content_size), self.threads])

    @classmethod
    def from_bytes(cls, data: bytes) -> ZstdParams:
        """Parse :meth:`to_bytes`.

        Raises:
            DeltaFormatError: for anything else.
        """
        if len(data) != 7 or not data.startswith(_ZSTD_TAG):
            raise DeltaFormatError("bad zstd recompression parameters")
        (level,) = struct.unpack_from("<b", data, 3)
        checksum, content_size, threads = data[4:7]
        if not -7 <= level <= 22 or checksum > 1 or content_size > 1 or threads > 1:
            raise DeltaFormatError("bad zstd recompression parameters")
        return cls(level, bool(checksum), bool(content_size), threads)


def is_zstd(data: bytes | memoryview) -> bool:
    """Whether ``data`` starts like a zstd frame."""
    return bytes(data[:4]) == _ZSTD_MAGIC


def zstd_frame_flags(data: bytes) -> tuple[bool, bool] | None:
    """(checksum flag, content-size flag) of a zstd frame without a dictionary, or ``None``."""
    if len(data) < 6 or not is_zstd(data):
        return None
    fhd = data[4]
    if fhd & 0x03:  # a dictionary ID: not reproducible without the dictionary
        return None
    single_segment = bool(fhd & 0x20)
    fcs = fhd >> 6
    return bool(fhd & 0x04), fcs != 0 or single_segment


Params = GzipParams | ZlibParams | XzParams | ZstdParams


def codec_of(data: bytes | memoryview) -> str | None:
    """``gzip``, ``zlib``, ``xz`` or ``zstd`` when ``data`` starts like one, else ``None``."""
    if is_gzip(data):
        return "gzip"
    if is_xz(data):
        return "xz"
    if is_zstd(data):
        return "zstd"
    if is_zlib(data):
        return "zlib"
    return None


def parse_params(data: bytes) -> Params:
    """Any recompression parameters, by their tag.

    Raises:
        DeltaFormatError: an unknown tag or bad values.
    """
    tag = bytes(data[:3])
    if tag in (_TAG, _SPLIT_TAG):
        return GzipParams.from_bytes(data)
    if tag == _ZLIB_TAG:
        return ZlibParams.from_bytes(data)
    if tag == _XZ_TAG:
        return XzParams.from_bytes(data)
    if tag == _ZSTD_TAG:
        return ZstdParams.from_bytes(data)
    raise DeltaFormatError("unknown recompression parameters")
