"""BLS entries: ostree's fixed key order, verbatim values, overlay initrds, strverscmp."""

from __future__ import annotations

import functools

import pytest

from bootree.errors import FormatError
from bootree.format.bls import BlsEntry, strverscmp

# Real output of ostree 2022.7 (ostree-vectors/admin-fake-sysroot.expected.txt).
REAL = (
    "title MyOS 2 (ostree:0)\n"
    "version 2\n"
    "options root=LABEL=root quiet ostree=/ostree/boot.0/myos/6fc0e25c3772be7f9e7c0bf8f58c7ab973482ef2c7c4d6d4dccddc2319cd2fe0/0\n"
    "linux /ostree/myos-6fc0e25c3772be7f9e7c0bf8f58c7ab973482ef2c7c4d6d4dccddc2319cd2fe0/vmlinuz-5.10.0\n"
    "initrd /ostree/myos-6fc0e25c3772be7f9e7c0bf8f58c7ab973482ef2c7c4d6d4dccddc2319cd2fe0/initramfs-5.10.0.img\n"
)


def test_real_entry_round_trips_byte_for_byte() -> None:
    e = BlsEntry.parse(REAL)
    assert e.to_text() == REAL
    assert e.title == "MyOS 2 (ostree:0)"
    assert e.version == "2"
    assert e.options.endswith("/0")


def test_fixed_key_order_then_overlays_then_unknown_in_file_order() -> None:
    text = "zz last\ninitrd /b\nlinux /k\n# comment\nversion 3\ninitrd /overlay\naa x\ntitle T\noptions a=b\n"
    e = BlsEntry.parse(text)
    assert e.to_text() == "title T\nversion 3\noptions a=b\nlinux /k\ninitrd /b\ninitrd /overlay\nzz last\naa x\n"


def test_tab_separator_and_repeated_key() -> None:
    e = BlsEntry.parse("title\tA  B\ntitle C\n")
    assert e.title == "C"
    e2 = BlsEntry.parse("title\tA  B\n")
    assert e2.title == "A  B"
    assert e2.to_text() == "title A  B\n"


def test_set_and_remove() -> None:
    e = BlsEntry().set("linux", "/k").set("title", "t").set("linux", "/k2")
    assert e.to_text() == "title t\nlinux /k2\n"
    assert e.remove("linux").to_text() == "title t\n"


def test_unwritable_values_are_rejected() -> None:
    with pytest.raises(FormatError):
        BlsEntry().set("title", "a\nb").to_text()
    with pytest.raises(FormatError):
        BlsEntry(overlay_initrds=("/x",)).to_text()


def test_strverscmp_orders_like_glibc() -> None:
    items = ["10", "9", "1", "2", "000", "00", "01", "010", "09", "0", "1.0", "1a"]
    assert sorted(items, key=functools.cmp_to_key(strverscmp)) == [
        "000", "00", "01", "010", "09", "0", "1", "1.0", "1a", "2", "9", "10",
    ]
    assert strverscmp("a", "a") == 0
    assert strverscmp("item#99", "item#100") < 0
