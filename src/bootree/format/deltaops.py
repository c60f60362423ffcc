"""The operation stream of a static-delta part, and the bsdiff patch format it embeds.

Layer: format (pure). A part's operations say how to build each of its objects from the part's
payload blob and from objects the client already has. Each operation is one ASCII byte and
unsigned LEB128 varints (libostree's ``_ostree_read_varuint64``: at most 10 bytes):

====  ============================  ==========================================================
``S`` open-splice-and-close         metadata: ``len off``; content: ``mode xattr len off``
``o`` open                          ``mode xattr size``: start a regular file of ``size`` bytes
``w`` write                         ``len off``: from the payload, or from the read source
``r`` set-read-source               ``off``: payload[off:off+32] names an old content object
``R`` unset-read-source
``B`` bspatch                       ``off len``: payload slice is a bsdiff patch of the source
``c`` close                         finish and verify the open object; unsets the read source
====  ============================  ==========================================================

:func:`decode_operations` checks everything that can be checked without the old objects:
the object list is consumed exactly, no operation reads outside the payload or the tables, an
open object receives exactly its declared size. Whatever the input, it returns or raises
:class:`~bootree.errors.DeltaFormatError`: the stream comes from the network.

The bsdiff patch is Colin Percival's format as Matthew Endsley's library streams it (no header,
no bzip2): triples of 8-byte sign-magnitude integers ``x y z``, then ``x`` bytes added bytewise to
the old data, then ``y`` literal bytes; the old position moves by ``x + z``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from bootree.errors import DeltaFormatError
from bootree.format.objects import ObjectType

__all__ = [
    "Bspatch",
    "Close",
    "OpCode",
    "OpWriter",
    "Open",
    "Operation",
    "SetReadSource",
    "Splice",
    "UnsetReadSource",
    "Write",
    "apply_bsdiff",
    "decode_operations",
    "decode_varint",
    "encode_bsdiff",
    "encode_varint",
    "split_bsdiff",
]

_MAX_VARINT_BYTES = 10
_U64 = 1 << 64


class OpCode(IntEnum):
    """Operation bytes, as libostree defines them."""

    OPEN_SPLICE_AND_CLOSE = ord("S")
    OPEN = ord("o")
    WRITE = ord("w")
    SET_READ_SOURCE = ord("r")
    UNSET_READ_SOURCE = ord("R")
    CLOSE = ord("c")
    BSPATCH = ord("B")
    # bootree's own deltas only (part version 1; libostree rejects these bytes):
    SET_READ_SOURCE_DECOMPRESSED = ord("U")
    OPEN_RECOMPRESSED = ord("G")
    ZSTD_PATCH = ord("Z")


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, least significant 7-bit group first."""
    if not 0 <= value < _U64:
        raise DeltaFormatError(f"varint {value} out of range")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it.

    Raises:
        DeltaFormatError: if it is truncated, longer than 10 bytes or does not fit 64 bits.
    """
    value = 0
    shift = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise DeltaFormatError("truncated varint in delta operations")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >= _U64:
                raise DeltaFormatError("varint in delta operations does not fit 64 bits")
            return value, pos + i + 1
        shift += 7
    raise DeltaFormatError("varint in delta operations is longer than 10 bytes")


# --- decoded operations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Splice:
    """``S``: object ``obj`` is payload[offset:offset+length] (content: with mode and xattrs)."""

    obj: int
    length: int
    offset: int
    mode_idx: int | None = None  # None for metadata objects
    xattr_idx: int | None = None


@dataclass(frozen=True, slots=True)
class Open:
    """``o``: start regular file ``obj`` of ``size`` bytes.

    bootree's ``G`` also opens one, but its writes build ``inner_size`` bytes of uncompressed
    data that are compressed at ``c`` with the parameters at payload[params_offset:+params_length]
    (see :mod:`bootree.format.recompress`); the result must be ``size`` bytes.
    """

    obj: int
    mode_idx: int
    xattr_idx: int
    size: int
    inner_size: int | None = None
    params_offset: int = 0
    params_length: int = 0

    @property
    def budget(self) -> int:
        """How many bytes the writes between open and close produce."""
        return self.size if self.inner_size is None else self.inner_size


@dataclass(frozen=True, slots=True)
class Write:
    """``w``: append ``length`` bytes at ``offset`` of the payload or, if ``from_source``, the source."""

    length: int
    offset: int
    from_source: bool


@dataclass(frozen=True, slots=True)
class SetReadSource:
    """``r``: payload[offset:offset+32] is the raw checksum of the old content object to read.

    bootree's ``U`` is the same, reading the old object's *decompressed* content.
    """

    offset: int
    decompressed: bool = False


@dataclass(frozen=True, slots=True)
class UnsetReadSource:
    """``R``: writes come from the payload again."""


@dataclass(frozen=True, slots=True)
class Bspatch:
    """``B``: payload[offset:offset+length] is a bsdiff patch from the read source to the object."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class ZstdPatch:
    """bootree's ``Z``: payload[offset:offset+length] is a zstd frame whose dictionary is the source."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Close:
    """``c``: object ``obj`` is complete; verify it."""

    obj: int


Operation = Splice | Open | Write | SetReadSource | UnsetReadSource | Bspatch | ZstdPatch | Close


def _check_slice(offset: int, length: int, size: int, what: str) -> None:
    if offset + length > size:
        raise DeltaFormatError(f"delta operation {what} reads {length} bytes at {offset}, past the payload ({size})")


def decode_operations(
    ops: bytes,
    objects: Sequence[tuple[ObjectType, str]],
    *,
    payload_size: int,
    n_modes: int,
    n_xattrs: int,
    extensions: bool = False,
) -> list[Operation]:
    """Decode and check a part's operation stream against its object list and tables.

    Raises:
        DeltaFormatError: for an unknown opcode, a truncated argument, an operation out of
            order (writing with nothing open, opening twice, a metadata ``o``), a read past the
            payload or the tables, a write past the open object's size, or an object list
            that the stream does not consume exactly.
    """
    out: list[Operation] = []
    pos = 0
    next_obj = 0
    open_obj: int | None = None
    open_size = 0
    written = 0
    source = False

    def args(n: int) -> list[int]:
        nonlocal pos
        vals = []
        for _ in range(n):
            v, pos = decode_varint(ops, pos)
            vals.append(v)
        return vals

    def take_object(what: str) -> tuple[int, ObjectType]:
        nonlocal next_obj
        if open_obj is not None:
            raise DeltaFormatError(f"delta operation {what} while object {open_obj} is open")
        if next_obj >= len(objects):
            raise DeltaFormatError(f"delta operation {what} but the part has no more objects")
        next_obj += 1
        return next_obj - 1, objects[next_obj - 1][0]

    def tables(mode_idx: int, xattr_idx: int, what: str) -> None:
        if mode_idx >= n_modes or xattr_idx >= n_xattrs:
            raise DeltaFormatError(f"delta operation {what} uses a mode or xattr index past its table")

    while pos < len(ops):
        code = ops[pos]
        pos += 1
        if code == OpCode.OPEN_SPLICE_AND_CLOSE:
            idx, otype = take_object("S")
            if otype is ObjectType.FILE:
                mode_idx, xattr_idx, length, offset = args(4)
                tables(mode_idx, xattr_idx, "S")
                _check_slice(offset, length, payload_size, "S")
                out.append(Splice(idx, length, offset, mode_idx, xattr_idx))
            else:
                length, offset = args(2)
                _check_slice(offset, length, payload_size, "S")
                out.append(Splice(idx, length, offset))
        elif code == OpCode.OPEN or (extensions and code == OpCode.OPEN_RECOMPRESSED):
            idx, otype = take_object(chr(code))
            if otype is not ObjectType.FILE:
                raise DeltaFormatError(f"delta operation {chr(code)} opens a metadata object")
            if code == OpCode.OPEN:
                mode_idx, xattr_idx, size = args(3)
                opened = Open(idx, mode_idx, xattr_idx, size)
            else:
                mode_idx, xattr_idx, size, inner, poff, plen = args(6)
                _check_slice(poff, plen, payload_size, "G")
                opened = Open(idx, mode_idx, xattr_idx, size, inner, poff, plen)
            tables(mode_idx, xattr_idx, chr(code))
            open_obj, open_size, written = idx, opened.budget, 0
            out.append(opened)
        elif code == OpCode.WRITE:
            length, offset = args(2)
            if open_obj is None:
                raise DeltaFormatError("delta operation w with no open object")
            if written + length > open_size:
                raise DeltaFormatError(f"delta operation w writes past the object's size ({open_size})")
            if not source:
                _check_slice(offset, length, payload_size, "w")
            written += length
            out.append(Write(length, offset, source))
        elif code == OpCode.SET_READ_SOURCE or (extensions and code == OpCode.SET_READ_SOURCE_DECOMPRESSED):
            (offset,) = args(1)
            _check_slice(offset, 32, payload_size, chr(code))
            source = True
            out.append(SetReadSource(offset, code == OpCode.SET_READ_SOURCE_DECOMPRESSED))
        elif code == OpCode.UNSET_READ_SOURCE:
            source = False
            out.append(UnsetReadSource())
        elif code == OpCode.BSPATCH or (extensions and code == OpCode.ZSTD_PATCH):
            offset, length = args(2)
            if open_obj is None or not source:
                raise DeltaFormatError(f"delta operation {chr(code)} needs an open object and a read source")
            if written:
                raise DeltaFormatError(f"delta operation {chr(code)} after writes to the same object")
            _check_slice(offset, length, payload_size, chr(code))
            written = open_size
            out.append(Bspatch(offset, length) if code == OpCode.BSPATCH else ZstdPatch(offset, length))
        elif code == OpCode.CLOSE:
            if open_obj is None:
                raise DeltaFormatError("delta operation c with no open object")
            if written != open_size:
                raise DeltaFormatError(f"delta object closed after {written} of its {open_size} bytes")
            out.append(Close(open_obj))
            open_obj = None
            source = False
        else:
            raise DeltaFormatError(f"unknown delta operation {code:#04x}")
    if open_obj is not None:
        raise DeltaFormatError(f"delta operations end with object {open_obj} still open")
    if next_obj != len(objects):
        raise DeltaFormatError(f"delta operations build {next_obj} of the part's {len(objects)} objects")
    return out


class OpWriter:
    """Builds an operation stream; methods mirror the opcodes."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def _emit(self, code: OpCode, *values: int) -> None:
        self._buf.append(code)
        for v in values:
            self._buf += encode_varint(v)

    def splice_meta(self, length: int, offset: int) -> None:
        """``S`` for a metadata object."""
        self._emit(OpCode.OPEN_SPLICE_AND_CLOSE, length, offset)

    def splice_content(self, mode_idx: int, xattr_idx: int, length: int, offset: int) -> None:
        """``S`` for a regular file (content) or symlink (target)."""
        self._emit(OpCode.OPEN_SPLICE_AND_CLOSE, mode_idx, xattr_idx, length, offset)

    def open(self, mode_idx: int, xattr_idx: int, size: int) -> None:
        """``o``."""
        self._emit(OpCode.OPEN, mode_idx, xattr_idx, size)

    def write(self, length: int, offset: int) -> None:
        """``w``."""
        self._emit(OpCode.WRITE, length, offset)

    def set_read_source(self, offset: int) -> None:
        """``r``."""
        self._emit(OpCode.SET_READ_SOURCE, offset)

    def unset_read_source(self) -> None:
        """``R``."""
        self._emit(OpCode.UNSET_READ_SOURCE)

    def bspatch(self, offset: int, length: int) -> None:
        """``B``."""
        self._emit(OpCode.BSPATCH, offset, length)

    def set_read_source_decompressed(self, offset: int) -> None:
        """bootree's ``U``."""
        self._emit(OpCode.SET_READ_SOURCE_DECOMPRESSED, offset)

    def open_recompressed(
        self, mode_idx: int, xattr_idx: int, size: int, inner_size: int, params_offset: int, params_length: int
    ) -> None:
        """bootree's ``G``."""
        self._emit(OpCode.OPEN_RECOMPRESSED, mode_idx, xattr_idx, size, inner_size, params_offset, params_length)

    def zstd_patch(self, offset: int, length: int) -> None:
        """bootree's ``Z``."""
        self._emit(OpCode.ZSTD_PATCH, offset, length)

    def close(self) -> None:
        """``c``."""
        self._emit(OpCode.CLOSE)

    def to_bytes(self) -> bytes:
        """The stream so far."""
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)


# --- bsdiff -----------------------------------------------------------------------------------


def _offtout(v: int) -> bytes:
    mag = -v if v < 0 else v
    if mag >= 1 << 63:
        raise DeltaFormatError("bsdiff offset out of range")
    return (mag | (1 << 63 if v < 0 else 0)).to_bytes(8, "little")


#: Two little-endian u64 (a bsdiff triple's diff and extra lengths) and the sign-magnitude mask.
_TWO_OFFSETS = struct.Struct("<QQ")
_MAGNITUDE = (1 << 63) - 1


def _offtin(b: bytes | memoryview) -> int:
    raw = int.from_bytes(b, "little")
    mag = raw & ((1 << 63) - 1)
    return -mag if raw >> 63 else mag


def encode_bsdiff(controls: Iterable[tuple[int, int, int]], diff: bytes, extra: bytes) -> bytes:
    """Interleave a bsdiff control list and its diff and extra blocks into one patch stream.

    ``diff`` and ``extra`` are the concatenated blocks (as bsdiff computes them): triple ``i``
    takes the next ``x`` bytes of ``diff`` and the next ``y`` bytes of ``extra``.
    """
    out = bytearray()
    dpos = epos = 0
    for x, y, z in controls:
        out += _offtout(x) + _offtout(y) + _offtout(z)
        out += diff[dpos : dpos + x]
        out += extra[epos : epos + y]
        dpos += x
        epos += y
    if dpos != len(diff) or epos != len(extra):
        raise DeltaFormatError("bsdiff control list does not cover its diff and extra blocks")
    return bytes(out)


def _add_bytes(a: bytes | memoryview, b: bytes | memoryview) -> bytes:
    """Bytewise ``(a[i] + b[i]) % 256``, done on big integers (SWAR: no carry crosses a byte)."""
    n = len(a)
    if n == 0:
        return b""
    ai = int.from_bytes(a, "little")
    bi = int.from_bytes(b, "little")
    low7 = int.from_bytes(b"\x7f" * n, "little")
    high = int.from_bytes(b"\x80" * n, "little")
    return (((ai & low7) + (bi & low7)) ^ ((ai ^ bi) & high)).to_bytes(n, "little")


def split_bsdiff(patch: bytes, new_size: int) -> tuple[bytes, bytes, bytes]:
    """The control block (24-byte triples, as stored), diff block and extra block of a patch
    stream that builds ``new_size`` bytes (the inverse of :func:`encode_bsdiff`), for a C
    patcher to run.

    Raises:
        DeltaFormatError: as :func:`apply_bsdiff`.
    """
    view = memoryview(patch)
    controls: list[memoryview] = []
    diffs: list[memoryview] = []
    extras: list[memoryview] = []
    pos = made = 0
    end = len(patch)
    unpack = _TWO_OFFSETS.unpack_from
    while made < new_size:
        if pos + 24 > end:
            raise DeltaFormatError("truncated bsdiff patch")
        # Lengths are sign-magnitude: a set top bit is a negative length (or -0, which is 0).
        x, y = unpack(patch, pos)
        if x >> 63:
            x = -(x & _MAGNITUDE)
        if y >> 63:
            y = -(y & _MAGNITUDE)
        start = pos
        pos += 24
        if x < 0 or y < 0 or made + x > new_size or pos + x > end:
            raise DeltaFormatError("bsdiff patch diff block out of range")
        diffs.append(view[pos : pos + x])
        pos += x
        made += x
        if made + y > new_size or pos + y > end:
            raise DeltaFormatError("bsdiff patch extra block out of range")
        extras.append(view[pos : pos + y])
        controls.append(view[start : start + 24])
        pos += y
        made += y
    return b"".join(controls), b"".join(diffs), b"".join(extras)


def apply_bsdiff(old: bytes, patch: bytes, new_size: int) -> bytes:
    """The new data that ``patch`` makes from ``old``; exactly ``new_size`` bytes.

    Raises:
        DeltaFormatError: for a truncated patch, a negative or oversized length, or a triple
            that writes past ``new_size``.
    """
    new = bytearray()
    pos = 0
    oldpos = 0
    old_size = len(old)
    view = memoryview(patch)
    while len(new) < new_size:
        if pos + 24 > len(patch):
            raise DeltaFormatError("truncated bsdiff patch")
        x, y, z = _offtin(view[pos : pos + 8]), _offtin(view[pos + 8 : pos + 16]), _offtin(view[pos + 16 : pos + 24])
        pos += 24
        if x < 0 or y < 0 or len(new) + x > new_size or pos + x > len(patch):
            raise DeltaFormatError("bsdiff patch diff block out of range")
        diff = view[pos : pos + x]
        pos += x
        # Only the part of [oldpos, oldpos + x) inside the old data is added; the rest is literal.
        lo, hi = max(oldpos, 0), min(oldpos + x, old_size)
        if lo < hi:
            a, b = lo - oldpos, hi - oldpos
            new += diff[:a]
            new += _add_bytes(diff[a:b], old[lo:hi])
            new += diff[b:]
        else:
            new += diff
        oldpos += x
        if len(new) + y > new_size or pos + y > len(patch):
            raise DeltaFormatError("bsdiff patch extra block out of range")
        new += view[pos : pos + y]
        pos += y
        oldpos += z
    return bytes(new)
