"""``ostree.sizes``: the per-object size index a commit can carry (``commit --generate-sizes``).

Layer: format (pure). The value is an ``aay``; each entry is the object's 32-byte checksum, its
archived (compressed) size and its unpacked size as LEB128 varints, and its object-type number,
sorted by checksum, as libostree writes and reads it (the varints are those of static-delta
operations). A client uses it to tell how much a pull
would download before fetching anything (``show --print-sizes``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bootree.errors import FormatError
from bootree.format.checksum import Checksum, ObjectType, from_raw, to_raw
from bootree.format.deltaops import decode_varint, encode_varint
from bootree.format.gvariant import Variant

__all__ = ["SIZES_KEY", "SizeEntry", "decode_sizes", "encode_sizes"]

SIZES_KEY = "ostree.sizes"


@dataclass(frozen=True, order=True, slots=True)
class SizeEntry:
    """One object of a commit's tree, with its sizes."""

    checksum: Checksum
    archived: int
    unpacked: int
    otype: ObjectType


def encode_sizes(entries: Iterable[SizeEntry]) -> Variant:
    """The ``ostree.sizes`` value for ``entries`` (sorted by checksum, one per object)."""
    unique = {(e.checksum, e.otype): e for e in entries}
    ordered = sorted(unique.values(), key=lambda e: (e.checksum, e.otype.number))
    return Variant(
        "aay",
        [to_raw(e.checksum) + encode_varint(e.archived) + encode_varint(e.unpacked) + bytes([e.otype.number]) for e in ordered],
    )


def decode_sizes(value: Variant) -> list[SizeEntry]:
    """Entries of an ``ostree.sizes`` value (an entry without the type byte, as older ostree
    wrote, is a content object).

    Raises:
        FormatError: for a value of another type or a malformed entry.
    """
    if value.type != "aay":
        raise FormatError(f"ostree.sizes has type {value.type}, not aay")
    out = []
    items: Any = value.value  # checked by its type string
    for raw in items:
        data = bytes(raw)
        if len(data) < 34:
            raise FormatError("ostree.sizes: entry too short")
        try:
            archived, pos = decode_varint(data, 32)
            unpacked, pos = decode_varint(data, pos)
        except FormatError as e:
            raise FormatError(f"ostree.sizes: entry for {data[:32].hex()}: {e}") from None
        otype = ObjectType.FILE
        if pos < len(data):
            otype = ObjectType.from_number(data[pos])
        out.append(SizeEntry(from_raw(data[:32]), archived, unpacked, otype))
    return out
