"""Where a gzip object's deflate stream can be cut for a parallel rebuild (generation side).

Layer: delta. :mod:`bootree.format.deflatesplit` rebuilds a deflate stream in pieces that start
at clean block boundaries. Finding the boundaries needs the stream's block structure: zlib's
``inflate(Z_BLOCK)`` stops after each block and reports the input and bit position, which
Python's ``zlib`` module does not expose, so the system libz is called through ``ctypes`` (the
same library Python's ``zlib`` uses). Without it, or when no boundary reproduces, the object
is rebuilt in one piece as before: the segment list is an optimisation, never a requirement.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from bootree.format.recompress import GzipParams, gzip_join, gzip_segment, gzip_segment_jobs

__all__ = ["block_boundaries", "find_segments"]

log = logging.getLogger(__name__)

#: Contents smaller than this are rebuilt in one piece (cutting them gains too little).
_MIN_SPLIT = 4 << 20
#: Target size of one piece of contents.
_PIECE = 4 << 20
_Z_BLOCK = 5
_Z_OK, _Z_STREAM_END = 0, 1


class _ZStream(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint), ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint), ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p), ("state", ctypes.c_void_p), ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p), ("opaque", ctypes.c_void_p), ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong), ("reserved", ctypes.c_ulong),
    ]


def _libz() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("z")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.zlibVersion.restype = ctypes.c_char_p
    lib.inflateInit2_.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.inflate.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.inflateEnd.argtypes = [ctypes.c_void_p]
    return lib


def block_boundaries(body: bytes) -> list[tuple[int, int]] | None:
    """``(contents offset, bit offset)`` after each non-final block of the raw deflate ``body``,
    or ``None`` when libz cannot be called or the stream does not inflate."""
    lib = _libz()
    if lib is None:
        return None
    strm = _ZStream()
    if lib.inflateInit2_(ctypes.byref(strm), -15, lib.zlibVersion(), ctypes.sizeof(strm)) != _Z_OK:
        return None
    src = ctypes.create_string_buffer(body, len(body))
    out = ctypes.create_string_buffer(1 << 20)
    strm.next_in = ctypes.addressof(src)
    strm.avail_in = len(body)
    found: list[tuple[int, int]] = []
    try:
        while True:
            strm.next_out = ctypes.addressof(out)
            strm.avail_out = len(out)
            rc = lib.inflate(ctypes.byref(strm), _Z_BLOCK)
            if rc == _Z_STREAM_END:
                return found
            if rc != _Z_OK:
                return None
            if strm.data_type & 128 and not strm.data_type & 64:  # after an end-of-block code
                found.append((strm.total_out, strm.total_in * 8 - (strm.data_type & 7)))
    finally:
        lib.inflateEnd(ctypes.byref(strm))


def _original_bits(body: bytes, start: int, count: int) -> tuple[bytes, int]:
    """``count`` bits of ``body`` from the byte-aligned bit offset ``start``, as
    :func:`bootree.format.deflatesplit.compress_segment` returns them."""
    whole, rest = divmod(count, 8)
    data = body[start // 8 : start // 8 + whole]
    if rest:
        data += bytes([body[start // 8 + whole] & ((1 << rest) - 1)])
    return data, count


def find_segments(data: bytes, inner: bytes, params: GzipParams) -> GzipParams | None:
    """``params`` with a segment list that rebuilds ``data`` bit for bit in pieces of about
    :data:`_PIECE` bytes of contents, or ``None`` when none is found (small contents, no libz,
    no clean cut, or ``params`` that do not rebuild ``data`` at all).

    Each candidate cut (byte-aligned: a stored block's padding depends on the bit phase) is
    tried on the block after it; then the whole stream rebuilt from the
    pieces must equal ``data`` (which also checks ``params`` themselves).
    """
    if len(inner) < _MIN_SPLIT or params.segments:
        return None
    body = data[len(params.header) : -8]
    blocks = block_boundaries(body)
    if not blocks:
        return None
    chosen: list[tuple[int, int]] = []
    want = _PIECE
    for k, (offset, bit) in enumerate(blocks[:-1]):
        # A stored block pads to a byte boundary, so a piece must start at the same bit phase
        # as in the whole stream: only byte-aligned cuts are taken.
        if offset < want or len(inner) - offset < _PIECE // 2 or bit % 8:
            continue
        nxt_offset, nxt_bit = blocks[k + 1]
        piece = gzip_segment(inner, params, (offset, nxt_offset, nxt_bit - bit))
        if piece == _original_bits(body, bit, nxt_bit - bit):
            chosen.append((offset, bit))
            want = offset + _PIECE
    if not chosen:
        return None
    split = GzipParams(params.header, params.level, params.mem_level, params.strategy, tuple(chosen))
    pieces = [gzip_segment(inner, split, job) for job in gzip_segment_jobs(split, len(inner))]
    if gzip_join(inner, split, pieces) != data:
        log.debug("gzip segment list does not reproduce the object: rebuilt in one piece")
        return None
    return split

