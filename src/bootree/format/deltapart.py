"""Static-delta part files as libostree writes them: ``(yay)``, a compression byte and the
(xz-compressed) ``(a(uuu)aa(ayay)ayay)`` of modes, xattr sets, payload and operations.

Layer: format (bytes in, values out). Re-exported by :mod:`bootree.format.delta`. A part is up
to ``max_chunk_size`` (32 MB) of payload, so :func:`encode_part_chunks` serializes it in pieces
(the payload is never copied) and compresses them as they come: the caller writes each
compressed chunk out and never holds the uncompressed serialization or the whole file.
"""

from __future__ import annotations

import hashlib
import lzma
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

from bootree.errors import DeltaFormatError, GVariantError
from bootree.format import gvariant
from bootree.format.objects import Xattrs, bswap32

__all__ = [
    "PART_PAYLOAD_TYPE",
    "Compression",
    "PartPayload",
    "PartTables",
    "decode_part",
    "decode_part_stream",
    "encode_part",
    "encode_part_chunks",
    "parse_part_payload",
    "part_digest",
    "xz_dict_size",
]

PART_PAYLOAD_TYPE = "(a(uuu)aa(ayay)ayay)"

class Compression:
    """Part compression bytes; libostree accepts no others."""

    NONE = 0
    XZ = ord("x")


@dataclass(frozen=True, slots=True)
class PartPayload:
    """A decompressed part: mode and xattr tables, the payload blob and the operation stream."""

    modes: tuple[tuple[int, int, int], ...]  # (uid, gid, mode), native values
    xattrs: tuple[Xattrs, ...]  # names without their trailing NUL
    #: a bytearray while a part is assembled, a view of the decompressed part once read (never copied)
    payload: bytes | bytearray | memoryview
    operations: bytes

    def to_bytes(self) -> bytes:
        """The uncompressed ``(a(uuu)aa(ayay)ayay)`` serialization."""
        return b"".join(self.chunks())

    def chunks(self) -> list[bytes | memoryview]:
        """:meth:`to_bytes` in pieces, the payload and operations as views (not copied).

        The tuple's members need no padding (``a(uuu)`` is first, the rest align to 1), and its
        framing is the end offsets of the first three members, last first.
        """
        modes = gvariant.encode("a(uuu)", [(bswap32(u), bswap32(g), bswap32(m)) for u, g, m in self.modes])
        xattrs = gvariant.encode("aa(ayay)", [[(n + b"\0", v) for n, v in xs] for xs in self.xattrs])
        end0 = len(modes)
        end1 = end0 + len(xattrs)
        end2 = end1 + len(self.payload)
        body = end2 + len(self.operations)
        w = gvariant.offset_size(body, 3)
        framing = b"".join(o.to_bytes(w, "little") for o in (end2, end1, end0))
        return [modes, xattrs, memoryview(self.payload), memoryview(self.operations), framing]


def xz_dict_size(size: int) -> int:
    """The LZMA2 dictionary that preset 8 would use, shrunk to fit ``size`` bytes of input.

    A dictionary larger than the input compresses no better, but preset 8's 32 MiB one costs
    about 370 MiB of encoder memory whatever the input: fitting it keeps small parts cheap.
    """
    d = 1 << 16
    while d < size and d < 32 << 20:
        d <<= 1
    return d


def encode_part(part: PartPayload, compression: int = Compression.XZ) -> bytes:
    """A part file: compression byte then the (compressed) payload, as libostree writes it."""
    return b"".join(encode_part_chunks(part, compression))


def encode_part_chunks(part: PartPayload, compression: int = Compression.XZ, *, dict_size: int | None = None) -> Iterator[bytes]:
    """The part file in pieces, compressed as the serialization is produced.

    xz is liblzma preset 8 with CRC64, as libostree writes it, its dictionary fitted to the
    part (``dict_size`` caps it; neither changes a byte a decoder needs to know about).
    """
    chunks = part.chunks()
    size = sum(len(c) for c in chunks)
    if compression == Compression.NONE:
        yield b"\0"
        yield from (bytes(c) for c in chunks)
        return
    if compression != Compression.XZ:
        raise DeltaFormatError(f"unknown part compression {compression!r}")
    fitted = xz_dict_size(size) if dict_size is None else min(xz_dict_size(size), dict_size)
    comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                               filters=[{"id": lzma.FILTER_LZMA2, "preset": 8, "dict_size": fitted}])
    yield b"x"
    for c in chunks:
        for start in range(0, len(c), 1 << 20):  # 1 MiB at a time: output flows out as it is made
            out = comp.compress(c[start : start + (1 << 20)])
            if out:
                yield out
    yield comp.flush()


def part_digest(data: bytes) -> bytes:
    """The digest a superblock records for a part file."""
    return hashlib.sha256(data).digest()


def decode_part(data: bytes, *, max_size: int) -> PartPayload:
    """Parse a part file; decompression stops with an error beyond ``max_size`` bytes.

    Raises:
        DeltaFormatError: for an unknown compression byte, a corrupt or truncated xz stream,
            a payload larger than ``max_size`` or malformed tables.
    """
    if not data:
        raise DeltaFormatError("empty delta part")
    comp, body = data[0], data[1:]
    if comp == Compression.NONE:
        raw = body
        if len(raw) > max_size:
            raise DeltaFormatError(f"delta part is larger than its limit of {max_size} bytes")
    elif comp == Compression.XZ:
        # Loaded here: the recompression module (and its deflate splitter) is not needed to
        # read a superblock, which every pull that looks for a delta does.
        from bootree.format.recompress import unxz

        raw = unxz(body, max_size=max_size, what="delta part")
    else:
        raise DeltaFormatError(f"unknown delta part compression {comp:#04x}")
    part = parse_part_payload(raw)
    # Callers of this whole-bytes form get bytes, as they always did (one copy of the payload).
    return PartPayload(part.modes, part.xattrs, bytes(part.payload), part.operations)


def decode_part_stream(chunks: Iterable[bytes], *, max_size: int) -> PartPayload:
    """Parse a part file given in pieces, each decompressed as it comes.

    Neither the whole compressed file nor a second copy of its contents is ever held. The caller
    hashes the pieces and compares digest and size with the superblock's before it believes
    anything in the part (nothing here acts on its contents).

    Raises:
        DeltaFormatError: as :func:`decode_part`.
    """
    out = bytearray()
    comp: int | None = None
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    for chunk in chunks:
        if not chunk:
            continue
        body: bytes | memoryview = chunk
        if comp is None:
            comp, body = chunk[0], memoryview(chunk)[1:]
            if comp not in (Compression.NONE, Compression.XZ):
                raise DeltaFormatError(f"unknown delta part compression {comp:#04x}")
        if comp == Compression.NONE:
            out += body
        else:
            if dec.eof:
                if body:
                    raise DeltaFormatError("trailing data after the xz stream of delta part")
                continue
            try:
                out += dec.decompress(body, max_length=max_size + 1 - len(out))
                while not dec.eof and not dec.needs_input and len(out) <= max_size:
                    out += dec.decompress(b"", max_length=max_size + 1 - len(out))
            except lzma.LZMAError as exc:
                raise DeltaFormatError(f"corrupt xz data in delta part: {exc}") from exc
            if dec.unused_data:
                raise DeltaFormatError("trailing data after the xz stream of delta part")
        if len(out) > max_size:
            raise DeltaFormatError(f"delta part decompresses to more than its limit of {max_size} bytes")
    if comp is None:
        raise DeltaFormatError("empty delta part")
    if comp == Compression.XZ and not dec.eof:
        raise DeltaFormatError("truncated xz data in delta part")
    return parse_part_payload(out)


def parse_part_payload(raw: bytes | bytearray) -> PartPayload:
    """The decompressed ``(a(uuu)aa(ayay)ayay)`` of a part; the payload is a view of ``raw``
    (:func:`decode_part_stream` keeps it so; :func:`decode_part` copies it out).

    The framing is read directly (a generic decode would copy the payload twice and re-encode
    the whole part to check its normal form): the tables are decoded and checked for normal
    form, the offsets must be ordered and of minimal width, and the two byte arrays need no
    checks of their own.

    Raises:
        DeltaFormatError: for malformed framing or tables.
    """
    view = memoryview(raw)
    n = len(view)
    w = gvariant.container_offset_size(n)
    table = n - 3 * w
    if table < 0:
        raise DeltaFormatError("malformed delta part: too short for its framing")
    end0, end1, end2 = (int.from_bytes(view[n - k * w : n - (k - 1) * w], "little") for k in (1, 2, 3))
    if not 0 <= end0 <= end1 <= end2 <= table:
        raise DeltaFormatError("malformed delta part: framing offsets out of order")
    if gvariant.offset_size(table, 3) != w:
        raise DeltaFormatError("malformed delta part: framing offsets not of minimal width")
    try:
        modes = cast("list[tuple[int, int, int]]", gvariant.decode("a(uuu)", view[:end0]))
        xattrs = cast("list[list[tuple[bytes, bytes]]]", gvariant.decode("aa(ayay)", view[end0:end1]))
        xattr_sets = []
        for xs in xattrs:
            entries = []
            for name, value in xs:
                if not name.endswith(b"\0"):
                    raise DeltaFormatError("delta part xattr name lacks its trailing NUL")
                entries.append((name[:-1], value))
            xattr_sets.append(tuple(entries))
    except GVariantError as exc:
        raise DeltaFormatError(f"malformed delta part: {exc}") from exc
    return PartPayload(
        tuple((bswap32(u), bswap32(g), bswap32(m)) for u, g, m in modes),
        tuple(xattr_sets),
        view[end1:end2],
        bytes(view[end2:table]),
    )


@dataclass(slots=True)
class PartTables:
    """Mutable builder of a part's mode and xattr tables (each distinct value stored once)."""

    modes: list[tuple[int, int, int]] = field(default_factory=list)
    xattrs: list[Xattrs] = field(default_factory=list)
    _mode_idx: dict[tuple[int, int, int], int] = field(default_factory=dict)
    _xattr_idx: dict[Xattrs, int] = field(default_factory=dict)

    def mode_index(self, uid: int, gid: int, mode: int) -> int:
        """Index of ``(uid, gid, mode)`` in the mode table, added on first use."""
        key = (uid, gid, mode)
        idx = self._mode_idx.get(key)
        if idx is None:
            idx = self._mode_idx[key] = len(self.modes)
            self.modes.append(key)
        return idx

    def xattr_index(self, xattrs: Xattrs) -> int:
        """Index of an xattr set in the xattr table, added on first use."""
        idx = self._xattr_idx.get(xattrs)
        if idx is None:
            idx = self._xattr_idx[xattrs] = len(self.xattrs)
            self.xattrs.append(xattrs)
        return idx
