"""SHA-256 object checksums: the one representation (64 lowercase hex chars) and conversions.

Layer: format. Checksums are validated once, where they enter (user input, parsed objects), and
trusted afterwards, so the rest of the code passes :data:`Checksum` around without re-checking.
"""

from __future__ import annotations

import re
from typing import NewType

from bootree.errors import InvalidChecksum

__all__ = ["Checksum", "from_raw", "is_checksum", "parse_checksum", "to_raw"]

#: 64 lowercase hex digits naming an object by the SHA-256 of its checksum stream.
Checksum = NewType("Checksum", str)

_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_checksum(s: str) -> bool:
    """Whether ``s`` is a full checksum (64 lowercase hex digits)."""
    return bool(_HEX64.fullmatch(s))


def parse_checksum(s: str) -> Checksum:
    """Validate a checksum string.

    Raises:
        InvalidChecksum: if ``s`` is not 64 lowercase hex digits.
    """
    if not _HEX64.fullmatch(s):
        raise InvalidChecksum(f"invalid checksum {s!r}")
    return Checksum(s)


def from_raw(raw: bytes) -> Checksum:
    """Turn 32 raw digest bytes (as stored in GVariant ``ay``) into a :data:`Checksum`.

    Raises:
        InvalidChecksum: if ``raw`` is not 32 bytes long.
    """
    if len(raw) != 32:
        raise InvalidChecksum(f"raw checksum must be 32 bytes, got {len(raw)}")
    return Checksum(raw.hex())


def to_raw(csum: Checksum) -> bytes:
    """The 32 raw digest bytes of a checksum."""
    return bytes.fromhex(csum)
