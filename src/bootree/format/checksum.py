"""SHA-256 object checksums, object types and where an object lives under ``objects/``.

Layer: format. Checksums are validated once, where they enter (user input, parsed objects), and
trusted afterwards, so the rest of the code passes :data:`Checksum` around without re-checking.

The object type <-> file extension map is here and only here: the local store, the pull's remote
paths and the local-repository source all name objects ``ab/cdef….ext`` through
:func:`object_relpath` and read names back through :func:`parse_object_name`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import NewType, cast

from bootree.errors import FormatError, InvalidChecksum

__all__ = [
    "ARCHIVED_FILE_EXT",
    "Checksum",
    "ObjectType",
    "from_raw",
    "is_checksum",
    "object_extension",
    "object_relpath",
    "object_type_of_extension",
    "parse_checksum",
    "parse_object_name",
    "to_raw",
]

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


class ObjectType(StrEnum):
    """Object kinds, valued by their file extension in ``objects/`` (content: see below)."""

    FILE = "file"
    DIR_TREE = "dirtree"
    DIR_META = "dirmeta"
    COMMIT = "commit"
    TOMBSTONE_COMMIT = "tombstone-commit"
    COMMIT_META = "commitmeta"

    @property
    def number(self) -> int:
        """ostree's numeric object type (used in static deltas and ``ostree.sizes``)."""
        return _TYPE_NUMBERS[self]

    @classmethod
    def from_number(cls, n: int) -> ObjectType:
        """The object type for ostree's numeric code.

        Raises:
            FormatError: for an unknown code.
        """
        for t, num in _TYPE_NUMBERS.items():
            if num == n:
                return t
        raise FormatError(f"unknown object type number {n}")

    @property
    def is_meta(self) -> bool:
        """Whether this is a metadata object (stored as plain GVariant bytes in every mode)."""
        return self is not ObjectType.FILE


_TYPE_NUMBERS = {
    ObjectType.FILE: 1,
    ObjectType.DIR_TREE: 2,
    ObjectType.DIR_META: 3,
    ObjectType.COMMIT: 4,
    ObjectType.TOMBSTONE_COMMIT: 5,
    ObjectType.COMMIT_META: 6,
}

#: The extension of a content object in an archive repository (zlib-compressed, with header).
ARCHIVED_FILE_EXT = "filez"

_TYPE_OF_EXT: dict[str, ObjectType] = {t.value: t for t in ObjectType} | {ARCHIVED_FILE_EXT: ObjectType.FILE}


def object_extension(otype: ObjectType, *, archive: bool) -> str:
    """The file extension of an object: its type's value, except ``filez`` for archived content.

    ``archive`` says whether the repository holding it is in archive mode (every remote served
    over HTTP is).
    """
    return ARCHIVED_FILE_EXT if archive and otype is ObjectType.FILE else otype.value


def object_type_of_extension(ext: str) -> ObjectType | None:
    """The object type an extension names (``file`` and ``filez`` both name content), or None."""
    return _TYPE_OF_EXT.get(ext)


#: ``.ext`` of each type, outside and inside archive mode (:func:`object_relpath` is called a
#: few times per object of a pull or commit: a table lookup, not a call per path).
_SUFFIX: dict[bool, dict[ObjectType, str]] = {
    archive: {t: "." + object_extension(t, archive=archive) for t in ObjectType} for archive in (False, True)
}


def object_relpath(otype: ObjectType, csum: Checksum, *, archive: bool) -> str:
    """``ab/cdef….ext``: where an object lives relative to a repository's ``objects/``."""
    return csum[:2] + "/" + csum[2:] + _SUFFIX[archive][otype]


def parse_object_name(prefix: str, name: str) -> tuple[ObjectType, Checksum] | None:
    """The object named by ``objects/<prefix>/<name>``, or None if that is not an object name.

    Both halves are validated (lowercase hex, 64 digits in all), so a stray file in ``objects/``
    or a hostile path is never mistaken for an object.
    """
    stem, _, ext = name.partition(".")
    otype = _TYPE_OF_EXT.get(ext)
    csum = prefix + stem
    if otype is None or len(prefix) != 2 or not _HEX64.fullmatch(csum):
        return None
    return otype, Checksum(csum)


_PREFIX = re.compile(r"[0-9a-f]{2}")
#: One object name inside ``"/" + "/".join(names) + "/"``: a file name never holds ``/``, so
#: each match is a whole name, bounded by the separators on both sides. ``[a-z]+`` leaves out
#: ``.tombstone-commit``: a tombstone is not an object of its own (prune and fsck skip it).
_OBJECT_NAMES = re.compile(r"/([0-9a-f]{62})\.([a-z]+)(?=/)")


def parse_object_names(prefix: str, names: Iterable[str]) -> Iterator[tuple[ObjectType, Checksum]]:
    """:func:`parse_object_name` over one ``objects/<prefix>/`` listing, skipping non-objects.

    The same validation, with the prefix checked once and one regular-expression scan per
    listing (joined on ``/``, which no directory entry contains), not one match per name:
    prune, fsck and abbreviated-checksum lookups list every object of a repository this way,
    and every deploy prunes.
    """
    if not _PREFIX.fullmatch(prefix):
        return iter(())
    types = _TYPE_OF_EXT
    # Built as one list (no generator frame per object; ``Checksum`` is a NewType: no call).
    found = [(types[ext], prefix + rest) for rest, ext in _OBJECT_NAMES.findall("/" + "/".join(names) + "/") if ext in types]
    return iter(cast("list[tuple[ObjectType, Checksum]]", found))
