"""Reading a superblock file piece by piece, its inline parts left where they are.

Layer: format (bytes in, values out: the bytes come from a ``read(offset, length)`` callable, so
this module opens no file). An inline delta (``static-delta generate --inline``, an offline
update file) is one superblock carrying every part file as a ``(yay)`` value in its metadata:
43 MB for the corpus's v1 → v2. Decoding it whole (:meth:`Superblock.from_bytes`) holds those
bytes several times over; this reader walks the GVariant framing instead, decodes every member
except the inline parts (each a few kilobytes at most), and returns where each part's bytes lie
in the file. A ``(yay)`` value is serialized as its compression byte followed by its bytes, which
is exactly a part file, so the caller reads, hashes and decompresses a part straight from the
superblock file, one at a time.

Every framing offset is bounds-checked and every padding byte must be zero: the members this
reader decodes are checked for normal form as :func:`bootree.format.gvariant.decode` checks
them, and a part's bytes are checked against the superblock's digest before they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from bootree.errors import DeltaFormatError, FormatError
from bootree.format import gvariant
from bootree.format.checksum import from_raw
from bootree.format.delta import SIGNED_SUPERBLOCK_MAGIC, SUPERBLOCK_TYPE, DeltaName, Superblock
from bootree.format.gvariant import Variant, container_offset_size
from bootree.format.objects import COMMIT_TYPE

__all__ = ["ReadAt", "ScannedSuperblock", "scan_superblock"]

#: ``read(offset, length)``: up to ``length`` bytes of the file from ``offset`` (fewer only at its end).
ReadAt = Callable[[int, int], bytes]

#: The type string of an inline part's value.
_INLINE_TYPE = "(yay)"
#: How many of a metadata value's last bytes are searched for its type string.
_TYPE_TAIL = 16


@dataclass(frozen=True, slots=True)
class ScannedSuperblock:
    """A superblock file read without its inline parts.

    ``superblock`` has every metadata key except the inline parts; ``inline`` maps a part index
    to ``(offset, size)`` of its part file inside the superblock file; ``signed`` says the file
    is a signed superblock (``(taya{sv})``) with at least one ``ostree.sign.*`` signature; its
    plain superblock is ``inner_size`` bytes at ``inner_offset``.
    """

    superblock: Superblock
    inline: dict[int, tuple[int, int]]
    signed: bool
    inner_offset: int
    inner_size: int


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


class _Reader:
    """Bounds-checked reads of the superblock file."""

    def __init__(self, read: ReadAt, size: int) -> None:
        self._read = read
        self.size = size

    def get(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DeltaFormatError(f"superblock member at {offset}+{length} lies outside the file ({self.size} bytes)")
        data = self._read(offset, length)
        if len(data) != length:
            raise DeltaFormatError(f"superblock file is truncated: {len(data)} bytes at {offset}, expected {length}")
        return data

    def offset(self, pos: int, w: int) -> int:
        return int.from_bytes(self.get(pos, w), "little")

    def zeros(self, start: int, end: int) -> None:
        """Padding must be zero bytes (normal form)."""
        if end > start and self.get(start, end - start).strip(b"\0"):
            raise DeltaFormatError("superblock padding is not zero (not in normal form)")


def _tuple_spans(r: _Reader, t: gvariant.GVariantType, base: int, n: int) -> list[tuple[int, int]]:
    """Absolute ``(start, end)`` of each member of the tuple of type ``t`` at ``base``."""
    members = t.children
    w = container_offset_size(n)
    n_var = sum(1 for m in members[:-1] if m.fixed_size is None)
    table = n - n_var * w
    if table < 0:
        raise DeltaFormatError(f"{t.string}: too short for its framing offsets")
    spans = []
    pos = 0
    k = 0
    for i, m in enumerate(members):
        start = _align(pos, m.alignment)
        if m.fixed_size is not None:
            end = start + m.fixed_size
        elif i == len(members) - 1:
            end = table
        else:
            k += 1
            end = r.offset(base + n - k * w, w)
        if not pos <= start <= end <= table:
            raise DeltaFormatError(f"superblock {t.string}: member {i} out of range")
        r.zeros(base + pos, base + start)
        spans.append((base + start, base + end))
        pos = end
    if gvariant.offset_size(table, n_var) != w and n_var:
        raise DeltaFormatError("superblock framing offsets are not of minimal width (not in normal form)")
    return spans


def _array_spans(r: _Reader, base: int, n: int, alignment: int) -> list[tuple[int, int]]:
    """Absolute spans of the elements of an array of variable-size elements at ``base``."""
    if n == 0:
        return []
    w = container_offset_size(n)
    last_end = r.offset(base + n - w, w)
    if last_end > n or (n - last_end) % w or last_end == n:
        raise DeltaFormatError("superblock metadata: bad framing offsets")
    count = (n - last_end) // w
    table = r.get(base + last_end, count * w)
    spans = []
    pos = 0
    for i in range(count):
        end = int.from_bytes(table[i * w : (i + 1) * w], "little")
        start = _align(pos, alignment)
        if not pos <= start <= end <= last_end:
            raise DeltaFormatError("superblock metadata: element offsets out of range")
        r.zeros(base + pos, base + start)
        spans.append((base + start, base + end))
        pos = end
    if pos != last_end:
        raise DeltaFormatError("superblock metadata: bytes after the last element (not in normal form)")
    if gvariant.offset_size(last_end, count) != w:
        raise DeltaFormatError("superblock metadata: framing offsets not of minimal width (not in normal form)")
    return spans


def _decode(r: _Reader, type_string: str, span: tuple[int, int]) -> gvariant.GValue:
    try:
        return gvariant.decode(type_string, r.get(span[0], span[1] - span[0]))
    except FormatError as exc:
        raise DeltaFormatError(f"malformed static-delta superblock: {exc}") from exc


def _entry(r: _Reader, span: tuple[int, int]) -> tuple[str, tuple[int, int], str]:
    """A metadata entry ``{sv}``: its key, the span of its variant's value and its type string
    (empty when the type cannot be read from the value's last bytes: the entry is then decoded
    whole, which reports what is wrong with it)."""
    start, end = span
    n = end - start
    w = container_offset_size(n)
    if n < w + 1:
        raise DeltaFormatError("superblock metadata: entry too short")
    key_end = r.offset(end - w, w)
    vstart = _align(key_end, 8)
    if not 0 < key_end <= vstart <= n - w:
        raise DeltaFormatError("superblock metadata: entry offsets out of range")
    if gvariant.offset_size(n - w, 1) != w:
        raise DeltaFormatError("superblock metadata: entry framing not of minimal width (not in normal form)")
    key = cast(str, _decode(r, "s", (start, start + key_end)))
    r.zeros(start + key_end, start + vstart)
    vend = end - w
    tail_len = min(_TYPE_TAIL, vend - start - vstart)
    tail = r.get(vend - tail_len, tail_len)
    sep = tail.rfind(b"\0")
    vtype = tail[sep + 1 :].decode("ascii", "replace") if sep >= 0 else ""
    return key, (start + vstart, vend - tail_len + sep), vtype


def _inner_span(r: _Reader) -> tuple[bool, int, int]:
    """Whether the file is a signed superblock holding signatures (``ostree.sign.*`` keys), and
    the span of the plain superblock in it."""
    if r.size < 16 or int.from_bytes(r.get(0, 8), "big") != SIGNED_SUPERBLOCK_MAGIC:
        return False, 0, r.size
    spans = _tuple_spans(r, gvariant.parse_type("(taya{sv})"), 0, r.size)
    sigs = cast("gvariant.VarDict", _decode(r, "a{sv}", spans[2]))  # checked by the caller
    signed = any(k.startswith("ostree.sign.") for k, _v in sigs)
    return signed, spans[1][0], spans[1][1] - spans[1][0]


def scan_superblock(read: ReadAt, size: int) -> ScannedSuperblock:
    """Parse the superblock file of ``size`` bytes that ``read`` gives, inline parts left in place.

    Raises:
        DeltaFormatError: for a truncated file, offsets outside it, malformed or non-normal
            members, or an inline part whose value is not a part file.
    """
    r = _Reader(read, size)
    signed, inner, inner_size = _inner_span(r)
    spans = _tuple_spans(r, gvariant.parse_type(SUPERBLOCK_TYPE), inner, inner_size)
    meta_span, ts_span, frm_span, to_span, commit_span, deps_span, parts_span, fb_span = spans
    values = [_decode(r, t, s) for t, s in zip(("t", "ay", "ay"), (ts_span, frm_span, to_span), strict=True)]
    ts, frm, to = cast(int, values[0]), cast(bytes, values[1]), cast(bytes, values[2])
    commit_value = _decode(r, COMMIT_TYPE, commit_span)
    _decode(r, "ay", deps_span)
    parts_raw = cast("list[tuple[int, bytes, int, int, bytes]]", _decode(r, "a(uayttay)", parts_span))
    fallbacks_raw = cast("list[tuple[int, bytes, int, int]]", _decode(r, "a(yaytt)", fb_span))
    if len(to) != 32 or len(frm) not in (0, 32):
        raise DeltaFormatError("superblock from/to checksums are not 32 bytes")
    # Which keys are inline parts needs the delta's name, which follows the metadata.
    name = DeltaName(from_raw(frm) if frm else None, from_raw(to))
    part_keys = {name.part_relpath(i): i for i in range(len(parts_raw))}
    meta: list[tuple[str, Variant]] = []
    inline: dict[int, tuple[int, int]] = {}
    for espan in _array_spans(r, meta_span[0], meta_span[1] - meta_span[0], 8):
        key, vspan, vtype = _entry(r, espan)
        index = part_keys.get(key)
        if index is not None and vtype == _INLINE_TYPE and index not in inline:
            if vspan[1] - vspan[0] < 1:
                raise DeltaFormatError(f"inline delta part {index} is empty")
            inline[index] = (vspan[0], vspan[1] - vspan[0])
            continue
        entry = cast("tuple[str, Variant]", _decode(r, "{sv}", espan))
        meta.append(entry)
    superblock = Superblock.from_value(meta, ts, frm, to, commit_value, parts_raw, fallbacks_raw)
    return ScannedSuperblock(superblock, inline, signed, inner, inner_size)
