"""bsdiff patches in the stream format libostree's ``B`` operation applies.

Layer: delta. The diff itself comes from the ``bsdiff4`` package (Colin Percival's algorithm in
C, which releases the GIL while it sorts); its control, diff and extra blocks are interleaved
into the headerless, uncompressed stream of :mod:`bootree.format.deltaops` (the part is
xz-compressed as a whole).
"""

from __future__ import annotations

import bsdiff4.core

from bootree.format.deltaops import encode_bsdiff

__all__ = ["bsdiff"]


def _controls(raw: bytes) -> list[tuple[int, int, int]]:
    def offtin(b: bytes) -> int:
        v = int.from_bytes(b, "little")
        mag = v & ((1 << 63) - 1)
        return -mag if v >> 63 else mag

    return [(offtin(raw[i : i + 8]), offtin(raw[i + 8 : i + 16]), offtin(raw[i + 16 : i + 24])) for i in range(0, len(raw), 24)]


def bsdiff(old: bytes, new: bytes) -> bytes:
    """A patch that turns ``old`` into ``new`` (``apply_bsdiff(old, patch, len(new)) == new``)."""
    control, diff, extra = bsdiff4.core.diff(old, new)
    return encode_bsdiff(_controls(control), diff, extra)
