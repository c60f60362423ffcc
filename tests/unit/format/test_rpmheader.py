"""rpm header blobs: round trips, bounds checks on every entry, and the package view."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format.rpmheader import HEADER_MAGIC, Tag, TagType, encode_header, package_of, parse_header

_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20)
_value = st.one_of(
    st.tuples(st.just(TagType.INT8), st.lists(st.integers(0, 2**8 - 1), min_size=1, max_size=8).map(tuple)),
    st.tuples(st.just(TagType.INT16), st.lists(st.integers(0, 2**16 - 1), min_size=1, max_size=8).map(tuple)),
    st.tuples(st.just(TagType.INT32), st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8).map(tuple)),
    st.tuples(st.just(TagType.INT64), st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=8).map(tuple)),
    st.tuples(st.just(TagType.STRING), _text.map(lambda s: (s,))),
    st.tuples(st.just(TagType.STRING_ARRAY), st.lists(_text, min_size=1, max_size=6).map(tuple)),
    st.tuples(st.just(TagType.I18NSTRING), st.lists(_text, min_size=1, max_size=3).map(tuple)),
    st.tuples(st.just(TagType.BIN), st.binary(min_size=1, max_size=40)),
)
_entries = st.dictionaries(st.integers(100, 20000), _value, max_size=12)


@settings(max_examples=300, deadline=None)
@given(_entries, st.booleans())
def test_round_trip(entries: dict[int, tuple[TagType, object]], magic: bool) -> None:
    blob = encode_header(entries, magic=magic)  # type: ignore[arg-type]
    assert blob.startswith(HEADER_MAGIC) == magic
    assert parse_header(blob).entries == entries


@settings(max_examples=200, deadline=None)
@given(_entries.filter(bool), st.data())
def test_truncated_blobs_fail_cleanly(entries: dict[int, tuple[TagType, object]], data: st.DataObject) -> None:
    blob = encode_header(entries)  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(FormatError):
        parse_header(blob[:cut])


@settings(max_examples=300, deadline=None)
@given(_entries, st.data())
def test_corrupted_index_never_reads_outside_the_blob(entries: dict[int, tuple[TagType, object]],
                                                      data: st.DataObject) -> None:
    """Any damage to the index gives a header or a FormatError, nothing else."""
    blob = bytearray(encode_header(entries))  # type: ignore[arg-type]
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] = data.draw(st.integers(0, 255))
    try:
        parse_header(bytes(blob))
    except FormatError:
        pass


def test_entry_bounds_and_types() -> None:
    def blob(tag: int, typ: int, off: int, count: int, data: bytes) -> bytes:
        return struct.pack(">II", 1, len(data)) + struct.pack(">iIiI", tag, typ, off, count) + data

    assert parse_header(blob(1000, TagType.STRING, 0, 1, b"bash\0")).string(Tag.NAME) == "bash"
    for bad, why in [(blob(1000, TagType.STRING, 0, 1, b"bash"), "unterminated"),
                     (blob(1000, TagType.STRING, 0, 2, b"a\0b\0"), "count 2"),
                     (blob(1028, TagType.INT32, 4, 1, b"\0" * 4), "do not fit"),
                     (blob(1028, TagType.INT32, 2, 1, b"\0" * 8), "do not fit"),  # misaligned
                     (blob(1028, TagType.INT32, -4, 1, b"\0" * 4), "outside"),
                     (blob(1028, 12, 0, 1, b"\0" * 4), "unknown type"),
                     (struct.pack(">II", 1 << 30, 0), "limits")]:
        with pytest.raises(FormatError, match=why):
            parse_header(bad)
    with pytest.raises(FormatError, match="not an integer"):
        parse_header(blob(1028, TagType.STRING, 0, 1, b"x\0")).ints(1028)
    # The region tag (63) is skipped, whatever its trailer offset says.
    region = struct.pack(">II", 2, 5) + struct.pack(">iIiI", 63, TagType.BIN, -16, 16) + \
        struct.pack(">iIiI", 1000, TagType.STRING, 0, 1) + b"bash\0"
    assert set(parse_header(region).entries) == {1000}


def test_package_view() -> None:
    h = parse_header(encode_header({
        Tag.NAME: (TagType.STRING, ("bash",)), Tag.VERSION: (TagType.STRING, ("5.2.26",)),
        Tag.RELEASE: (TagType.STRING, ("1.fc40",)), Tag.EPOCH: (TagType.INT32, (1,)),
        Tag.BUILDTIME: (TagType.INT32, (1700000000,)),
        Tag.DIRNAMES: (TagType.STRING_ARRAY, ("/usr/bin/", "/etc/")),
        Tag.BASENAMES: (TagType.STRING_ARRAY, ("bash", "sh", "bashrc")),
        Tag.DIRINDEXES: (TagType.INT32, (0, 0, 1)), Tag.FILESIZES: (TagType.INT32, (1000, 4, 20)),
        Tag.CHANGELOGTIME: (TagType.INT32, (1690000000, 1600000000)),
    }))
    p = package_of(h)
    assert (p.name, p.evr, p.buildtime) == ("bash", "1:5.2.26-1.fc40", 1700000000)
    assert p.files == (("/usr/bin/bash", 1000), ("/usr/bin/sh", 4), ("/etc/bashrc", 20))
    assert p.changelog_times == (1690000000, 1600000000)
    old = package_of(parse_header(encode_header({Tag.NAME: (TagType.STRING, ("old",)),
                                                 Tag.OLDFILENAMES: (TagType.STRING_ARRAY, ("/bin/x",)),
                                                 Tag.LONGFILESIZES: (TagType.INT64, (5 << 32,))})))
    assert old.files == (("/bin/x", 5 << 32),) and old.evr == "-"
    with pytest.raises(FormatError, match="DIRINDEXES entry beyond"):
        package_of(parse_header(encode_header({Tag.NAME: (TagType.STRING, ("x",)),
                                               Tag.DIRNAMES: (TagType.STRING_ARRAY, ("/",)),
                                               Tag.BASENAMES: (TagType.STRING_ARRAY, ("a",)),
                                               Tag.DIRINDEXES: (TagType.INT32, (3,))})))
    with pytest.raises(FormatError, match="without a NAME"):
        package_of(parse_header(encode_header({})))
