"""gzip members taken apart and rebuilt bit for bit: the codec behind compression-aware deltas.

Layer: format (pure; stdlib ``zlib`` only). A gzip'd object (an initramfs, a ``.gz`` manual page)
changes completely when one byte of its contents changes, so a delta of the compressed bytes
is as large as the object. bootree's own deltas diff the *uncompressed* contents instead and
have the client compress the result again, which works only if that compression reproduces
the original bytes exactly: :func:`find_gzip_params` finds the parameters (deflate level,
memory level, strategy, header) that do, by compressing and comparing, and returns ``None``
when none does (then the object is shipped as it is).

The parameters travel in the delta as :meth:`GzipParams.to_bytes`. zlib's output for given
parameters is deterministic and the same across its releases in practice; the client still
verifies the object's checksum before publishing it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from bootree.errors import DeltaFormatError

__all__ = ["GzipParams", "find_gzip_params", "gunzip", "gzip_compress", "is_gzip"]

_MAGIC = b"\x1f\x8b\x08"
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 2, 4, 8, 16
_TAG = b"gz1"
#: How much of the stream a candidate level must reproduce before it is tried on the whole.
_PROBE = 1 << 18


@dataclass(frozen=True, slots=True)
class GzipParams:
    """Everything needed to rebuild a one-member gzip file from its contents."""

    header: bytes
    level: int
    mem_level: int = 8
    strategy: int = zlib.Z_DEFAULT_STRATEGY

    def to_bytes(self) -> bytes:
        """``gz1``, level, memory level, strategy, then the header bytes."""
        return _TAG + bytes([self.level, self.mem_level, self.strategy]) + self.header

    @classmethod
    def from_bytes(cls, data: bytes) -> GzipParams:
        """Parse :meth:`to_bytes`.

        Raises:
            DeltaFormatError: for anything else.
        """
        if len(data) < 16 or not data.startswith(_TAG):
            raise DeltaFormatError("bad recompression parameters")
        level, mem, strategy = data[3], data[4], data[5]
        if not (0 <= level <= 9 and 1 <= mem <= 9 and strategy <= zlib.Z_FIXED):
            raise DeltaFormatError("bad recompression parameters")
        header = bytes(data[6:])
        _header_length(header)  # validates it
        return cls(header, level, mem, strategy)


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


def _levels(xfl: int) -> list[int]:
    # gzip's XFL: 2 = best compression (level 9), 4 = fastest (level 1); 0 = anything else.
    first = {2: [9], 4: [1]}.get(xfl, [6])
    return first + [lv for lv in (6, 9, 5, 4, 3, 2, 1, 7, 8) if lv not in first]


def find_gzip_params(data: bytes, inner: bytes) -> GzipParams | None:
    """Parameters with which zlib reproduces ``data`` from ``inner`` exactly, or ``None``.

    Each candidate must first reproduce the start of the stream (cheap), and then the whole.
    """
    try:
        start = _header_length(data)
    except DeltaFormatError:
        return None
    header = bytes(data[:start])
    body = memoryview(data)[start:]
    probe_in = inner[:_PROBE]
    for level in _levels(data[8]):
        for strategy in (zlib.Z_DEFAULT_STRATEGY,):
            c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
            head = c.compress(probe_in)
            if len(inner) <= _PROBE:
                head += c.flush()
            if bytes(body[: len(head)]) != head:
                continue
            params = GzipParams(header, level, 8, strategy)
            if gzip_compress(inner, params) == data:
                return params
    return None
