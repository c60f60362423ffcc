"""rpm headers, as the rpm database stores them (one blob per installed package).

Layer: format (pure). A header blob (rpm's ``headerExport``; rpm's ``docs/manual/format.md``,
``hregions.md``, ``tags.md``) is:

* an intro: two big-endian int32s, ``il`` (index entries) and ``dl`` (bytes of data); a blob
  read from a package file starts with the 8-byte header magic ``8e ad e8 01 00 00 00 00``
  first, which is accepted and skipped;
* ``il`` index entries of 16 bytes, four big-endian int32s: ``tag``, ``type``, ``offset`` (into
  the data), ``count``;
* ``dl`` bytes of data, each value at its entry's offset, big-endian, aligned for its type.

Types: NULL 0, CHAR 1, INT8 2, INT16 3, INT32 4, INT64 5, STRING 6, BIN 7, STRING_ARRAY 8,
I18NSTRING 9. Strings are NUL-terminated; a STRING has count 1, a STRING_ARRAY or I18NSTRING
``count`` strings in a row (an I18NSTRING's first string is the untranslated one). The first
entry of an installed header is usually the immutable region tag (63, BIN, 16 bytes: a copy of
an index entry whose offset points back at the region); it is kept as bytes, not interpreted.

:func:`parse_header` checks every entry against the bounds of the blob (offsets, counts,
terminators, sizes capped by the blob itself), so a corrupt database row fails with a
:class:`~bootree.errors.FormatError` instead of reading garbage. :func:`encode_header` writes
the same layout (with alignment padding), for tests and tools.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from bootree.errors import FormatError

__all__ = ["HEADER_MAGIC", "Header", "Package", "Tag", "TagType", "encode_header", "package_of", "parse_header"]

HEADER_MAGIC = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"
MAX_ENTRIES = 1 << 20
MAX_DATA = 256 << 20


class TagType(IntEnum):
    """rpm's tag data types."""

    NULL = 0
    CHAR = 1
    INT8 = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    STRING = 6
    BIN = 7
    STRING_ARRAY = 8
    I18NSTRING = 9


class Tag(IntEnum):
    """The tags bootree reads (rpm's ``tags.md``)."""

    HEADERIMMUTABLE = 63
    NAME = 1000
    VERSION = 1001
    RELEASE = 1002
    EPOCH = 1003
    BUILDTIME = 1006
    ARCH = 1022
    OLDFILENAMES = 1027
    FILESIZES = 1028
    CHANGELOGTIME = 1080
    DIRINDEXES = 1116
    BASENAMES = 1117
    DIRNAMES = 1118
    LONGFILESIZES = 5008


_INT = {TagType.INT8: (1, "B"), TagType.INT16: (2, "H"), TagType.INT32: (4, "I"), TagType.INT64: (8, "Q")}
_ALIGN = {TagType.INT16: 2, TagType.INT32: 4, TagType.INT64: 8}
Value = tuple[int, ...] | tuple[str, ...] | bytes


@dataclass(frozen=True, slots=True)
class Header:
    """A parsed header: tag → (type, value). Integers and strings are tuples; BIN/CHAR are bytes."""

    entries: dict[int, tuple[TagType, Value]] = field(default_factory=dict)

    def ints(self, tag: int) -> tuple[int, ...]:
        """An integer tag's values (``()`` when absent).

        Raises:
            FormatError: the tag holds something else.
        """
        got = self.entries.get(tag)
        if got is None:
            return ()
        if got[0] not in _INT:
            raise FormatError(f"rpm header: tag {tag} is {got[0].name}, not an integer")
        assert isinstance(got[1], tuple)
        return tuple(int(x) for x in got[1])

    def strings(self, tag: int) -> tuple[str, ...]:
        """A string tag's values (``()`` when absent).

        Raises:
            FormatError: the tag holds something else.
        """
        got = self.entries.get(tag)
        if got is None:
            return ()
        if got[0] not in (TagType.STRING, TagType.STRING_ARRAY, TagType.I18NSTRING):
            raise FormatError(f"rpm header: tag {tag} is {got[0].name}, not a string")
        assert isinstance(got[1], tuple)
        return tuple(str(x) for x in got[1])

    def string(self, tag: int) -> str | None:
        """The first string of a tag, or ``None``."""
        s = self.strings(tag)
        return s[0] if s else None


def _strings(data: bytes, off: int, count: int, tag: int) -> tuple[str, ...]:
    out = []
    for _ in range(count):
        end = data.find(b"\0", off)
        if end < 0:
            raise FormatError(f"rpm header: tag {tag}: unterminated string at data offset {off}")
        out.append(data[off:end].decode("utf-8", "surrogateescape"))
        off = end + 1
    return tuple(out)


def parse_header(blob: bytes) -> Header:
    """Parse a header blob (module docstring).

    Raises:
        FormatError: a truncated blob, an entry outside the data, an unknown type.
    """
    if blob.startswith(HEADER_MAGIC):
        blob = blob[len(HEADER_MAGIC) :]
    if len(blob) < 8:
        raise FormatError(f"rpm header: {len(blob)} bytes, shorter than its intro")
    il, dl = struct.unpack_from(">II", blob)
    if il > MAX_ENTRIES or dl > MAX_DATA:
        raise FormatError(f"rpm header: {il} entries / {dl} data bytes is beyond the limits")
    start = 8 + 16 * il
    if len(blob) < start + dl:
        raise FormatError(f"rpm header: {len(blob)} bytes, but the intro announces {start + dl}")
    data = blob[start : start + dl]
    entries: dict[int, tuple[TagType, Value]] = {}
    for i in range(il):
        tag, typ, off, count = struct.unpack_from(">iIiI", blob, 8 + 16 * i)
        try:
            t = TagType(typ)
        except ValueError:
            raise FormatError(f"rpm header: tag {tag}: unknown type {typ}") from None
        if tag == Tag.HEADERIMMUTABLE or t is TagType.NULL:
            continue  # the region marker (its trailer may lie in the data) carries no package data
        if off < 0 or off > dl or count > dl + 1:
            raise FormatError(f"rpm header: tag {tag}: offset {off} / count {count} outside {dl} data bytes")
        value: Value
        if t in _INT:
            size, code = _INT[t]
            if off % size or off + size * count > dl:
                raise FormatError(f"rpm header: tag {tag}: {count} {t.name} values at offset {off} do not fit")
            value = struct.unpack_from(f">{count}{code}", data, off)
        elif t in (TagType.CHAR, TagType.BIN):
            if off + count > dl:
                raise FormatError(f"rpm header: tag {tag}: {count} bytes at offset {off} do not fit")
            value = data[off : off + count]
        else:
            if t is TagType.STRING and count != 1:
                raise FormatError(f"rpm header: tag {tag}: a STRING with count {count}")
            value = _strings(data, off, count, tag)
        entries[tag] = (t, value)
    return Header(entries)


def _encode_value(t: TagType, value: Value) -> bytes:
    if t in _INT:
        assert isinstance(value, tuple)
        return struct.pack(f">{len(value)}{_INT[t][1]}", *value)
    if t in (TagType.CHAR, TagType.BIN):
        assert isinstance(value, bytes)
        return value
    assert isinstance(value, tuple)
    return b"".join(str(s).encode("utf-8", "surrogateescape") + b"\0" for s in value)


def encode_header(entries: dict[int, tuple[TagType, Value]], *, magic: bool = False) -> bytes:
    """A header blob holding ``entries`` (in tag order, values aligned for their type)."""
    index, data = [], bytearray()
    for tag in sorted(entries):
        t, value = entries[tag]
        align = _ALIGN.get(t, 1)
        data += b"\0" * (-len(data) % align)
        count = len(value)
        index.append(struct.pack(">iIiI", tag, t, len(data), count))
        data += _encode_value(t, value)
    body = struct.pack(">II", len(index), len(data)) + b"".join(index) + bytes(data)
    return (HEADER_MAGIC if magic else b"") + body


@dataclass(frozen=True, slots=True)
class Package:
    """What chunking needs of an installed package."""

    name: str
    evr: str
    """``[EPOCH:]VERSION-RELEASE``."""
    buildtime: int
    files: tuple[tuple[str, int], ...]
    """(absolute path, size) of each file the package owns."""
    changelog_times: tuple[int, ...] = ()


def package_of(h: Header) -> Package:
    """The package a header describes: its name, EVR, build time and file list.

    Files come from BASENAMES + DIRNAMES + DIRINDEXES (rpm ≥ 4 "compressed" file names), or
    OLDFILENAMES in very old headers; sizes from FILESIZES (LONGFILESIZES above 4 GiB).

    Raises:
        FormatError: no NAME, or file arrays that disagree in length or index past DIRNAMES.
    """
    name = h.string(Tag.NAME)
    if not name:
        raise FormatError("rpm header without a NAME")
    version, release = h.string(Tag.VERSION) or "", h.string(Tag.RELEASE) or ""
    epoch = h.ints(Tag.EPOCH)
    evr = (f"{epoch[0]}:" if epoch else "") + f"{version}-{release}"
    base, dirs, idx = h.strings(Tag.BASENAMES), h.strings(Tag.DIRNAMES), h.ints(Tag.DIRINDEXES)
    if base:
        if len(idx) != len(base):
            raise FormatError(f"rpm header of {name}: {len(base)} BASENAMES but {len(idx)} DIRINDEXES")
        if any(i >= len(dirs) for i in idx):
            raise FormatError(f"rpm header of {name}: a DIRINDEXES entry beyond its {len(dirs)} DIRNAMES")
        paths = tuple(dirs[i] + b for i, b in zip(idx, base, strict=True))
    else:
        paths = h.strings(Tag.OLDFILENAMES)
    sizes = h.ints(Tag.LONGFILESIZES) or h.ints(Tag.FILESIZES)
    if sizes and len(sizes) != len(paths):
        raise FormatError(f"rpm header of {name}: {len(paths)} files but {len(sizes)} sizes")
    buildtime = h.ints(Tag.BUILDTIME)
    return Package(name, evr, buildtime[0] if buildtime else 0,
                   tuple(zip(paths, sizes or (0,) * len(paths), strict=True)), h.ints(Tag.CHANGELOGTIME))
