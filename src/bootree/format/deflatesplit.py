"""Rebuilding one deflate stream in independent pieces, bit for bit, so both cores compress it.

Layer: format (pure; stdlib ``zlib`` only). Recompressing a large gzip'd object (a 61 MB
initramfs takes 3.6 s at level 6) is the longest single step of applying a bootree delta, and one
deflate stream is inherently serial. It can still be cut where zlib's compressor state is fully
determined by the bytes before the cut: at a *block boundary* whose previous block ends with a
match (zlib's lazy matcher then holds no pending match), the compressor's state is its 32 KiB
window, its hash chains over that window (every position is inserted at levels 4-9) and an empty
symbol buffer. A fresh compressor given that window as its dictionary (``zdict``) then emits the
same symbols, the same block boundaries and the same Huffman trees, so each piece is compressed
alone and the pieces' bits are concatenated at the boundaries' bit offsets.

Whether a boundary is clean cannot be seen from the stream, so the generator tries it
(:func:`bootree.delta.deflateblocks.find_segments`) and keeps a segment list only when the whole
rebuilt stream equals the original. The client still verifies the object's checksum.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

__all__ = ["MARGIN", "WINDOW", "BitJoiner", "compress_segment", "join_bits", "segment_count_ok"]

#: deflate's window: the dictionary a resumed piece needs.
WINDOW = 1 << 15
#: Input compressed past a piece's end, so the matcher sees the same lookahead as the whole
#: stream did (a match is at most 258 bytes; the lookahead at least 262).
MARGIN = 1 << 12
#: At most this many pieces per stream (bounds the parameter blob and a hostile delta's work).
MAX_SEGMENTS = 256


def segment_count_ok(count: int) -> bool:
    """Whether a stream may be cut into ``count`` + 1 pieces."""
    return 0 <= count <= MAX_SEGMENTS


def compress_segment(
    inner: bytes | memoryview, level: int, mem_level: int, strategy: int,
    start: int, end: int, nbits: int | None,
) -> tuple[bytes, int]:
    """The raw deflate bits of ``inner[start:end]`` as the whole stream's compressor emits them.

    Returns ``(data, count)``: the piece's first ``nbits`` bits (the whole rest of the stream,
    final block included, when ``nbits`` is ``None``), LSB first, bits past ``count`` in the
    last byte zero. ``start`` must be a clean block boundary for the result to be the
    original's; the caller verifies.
    """
    view = memoryview(inner)
    if start:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy, zdict=view[max(0, start - WINDOW) : start])
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
    if nbits is None:
        out = c.compress(view[start:]) + c.flush()
        return out, 8 * len(out)
    out = c.compress(view[start : end + MARGIN]) + c.flush()
    # Fewer bits than the piece is declared to span means a wrong segment list: the object's
    # checksum refuses the result later; here the bits are just what there is.
    nbits = min(nbits, 8 * len(out))
    whole, rest = divmod(nbits, 8)
    if not rest:
        return out[:whole], nbits
    return out[:whole] + bytes([out[whole] & ((1 << rest) - 1)]), nbits


class BitJoiner:
    """:func:`join_bits` as the pieces come, for a writer that streams them out in order.

    :meth:`add` returns the whole bytes completed so far (a partial last byte is carried to
    the next piece), :meth:`flush` the carried byte padded with zero bits.
    """

    def __init__(self) -> None:
        self._carry = 0
        self._bits = 0  # bits held in ``_carry`` (0-7)

    def add(self, data: bytes, count: int) -> bytes | memoryview:
        """The bytes completed by the piece ``data`` of ``count`` bits (LSB first)."""
        if not self._bits:  # byte-aligned: no copy of the piece
            whole, rest = divmod(count, 8)
            if rest:
                self._carry = data[whole] & ((1 << rest) - 1)
            self._bits = rest
            return memoryview(data)[:whole]
        value = (int.from_bytes(data[: (count + 7) // 8], "little") & ((1 << count) - 1)) << self._bits
        total = count + self._bits
        out = (value | self._carry).to_bytes((total + 7) // 8, "little")
        whole, self._bits = divmod(total, 8)
        self._carry = out[whole] if self._bits else 0
        return out[:whole]

    def flush(self) -> bytes:
        """The last partial byte, if any (zero-padded)."""
        return bytes([self._carry]) if self._bits else b""


def join_bits(pieces: Iterable[tuple[bytes, int]]) -> bytes:
    """Concatenate ``(data, count)`` pieces into one bit stream (LSB first, as deflate packs
    them), the last byte padded with zero bits. Byte-aligned pieces are simply appended."""
    joiner = BitJoiner()
    out = bytearray()
    for data, count in pieces:
        out += joiner.add(data, count)
    out += joiner.flush()
    return bytes(out)
