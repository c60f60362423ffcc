"""The cpio newc reader: entries, padding, GNU cpio's hardlink groups, damaged archives."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format.cpio import CpioEntry, read_newc


def _record(name: str, mode: int, data: bytes, *, ino: int = 1, nlink: int = 1, uid: int = 0, gid: int = 0) -> bytes:
    fields = [ino, mode, uid, gid, nlink, 7, len(data), 0, 1, 0, 0, len(name.encode()) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    return head + b"\0" * (-len(head) % 4) + data + b"\0" * (-len(data) % 4)


def _archive(*records: bytes) -> io.BytesIO:
    return io.BytesIO(b"".join(records) + _record("TRAILER!!!", 0, b"", ino=0))


def test_entries_in_order_with_their_metadata() -> None:
    arc = _archive(_record(".", 0o40755, b""), _record("./a", 0o100644, b"abc", ino=2, uid=5, gid=6),
                   _record("./l", 0o120777, b"a", ino=3))
    got = list(read_newc(arc))
    assert got == [
        CpioEntry(".", 0o40755, 0, 0, 7, b""),
        CpioEntry("./a", 0o100644, 5, 6, 7, b"abc"),
        CpioEntry("./l", 0o120777, 0, 0, 7, b"a"),
    ]


def test_hardlink_group_takes_the_data_of_its_last_name() -> None:
    arc = _archive(_record("x", 0o100644, b"", ino=9, nlink=3), _record("y", 0o100644, b"", ino=9, nlink=3),
                   _record("z", 0o100644, b"data", ino=9, nlink=3))
    got = list(read_newc(arc))
    assert got[0] == CpioEntry("x", 0o100644, 0, 0, 7, b"data")
    assert [(e.name, e.link_of, e.data) for e in got[1:]] == [("y", "x", b""), ("z", "x", b"")]


def test_incomplete_hardlink_group_is_still_yielded() -> None:
    arc = _archive(_record("x", 0o100644, b"", ino=9, nlink=2))
    assert [e.name for e in read_newc(arc)] == ["x"]


@pytest.mark.parametrize("cut", [5, 60, 115])
def test_truncated_archive_is_a_format_error(cut: int) -> None:
    data = _archive(_record("./a", 0o100644, b"abcdef")).getvalue()[:cut]
    with pytest.raises(FormatError):
        list(read_newc(io.BytesIO(data)))


def test_bad_magic_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="not a cpio newc header"):
        list(read_newc(io.BytesIO(b"070707" + b"0" * 200)))


@given(st.lists(st.tuples(st.text("abc/", min_size=1, max_size=12), st.binary(max_size=40)), max_size=8))
def test_round_trip(files: list[tuple[str, bytes]]) -> None:
    records = [_record(f"./{name}", 0o100600, data, ino=i + 2) for i, (name, data) in enumerate(files)]
    got = [(e.name, e.data) for e in read_newc(_archive(*records))]
    assert got == [(f"./{name}", data) for name, data in files]
