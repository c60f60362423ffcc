"""ostree.sizes codec: round trip, ostree's entry layout, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.gvariant import Variant
from bootree.format.sizes import SizeEntry, decode_sizes, encode_sizes

_TYPES = [ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.DIR_META]
entries = st.builds(
    SizeEntry,
    st.binary(min_size=32, max_size=32).map(lambda b: Checksum(b.hex())),
    st.integers(0, 2**63),
    st.integers(0, 2**63),
    st.sampled_from(_TYPES),
)


@given(st.lists(entries, max_size=20, unique_by=lambda e: (e.checksum, e.otype)))
def test_round_trip_sorted_by_checksum(items: list[SizeEntry]) -> None:
    decoded = decode_sizes(encode_sizes(items))
    assert decoded == sorted(items, key=lambda e: (e.checksum, e.otype.number))


def test_entry_layout_is_checksum_varints_type() -> None:
    # Taken from an ostree 2022.7 commit: symlink "a" (archived 35 bytes, unpacked 1).
    csum = Checksum("438802d990f25270d36f902bc9ce9d0737b88f9ae0b41ed59ec9e47c28523e0a")
    value = encode_sizes([SizeEntry(csum, 35, 1, ObjectType.FILE), SizeEntry(csum, 300, 300, ObjectType.DIR_META)])
    assert value.value[0] == bytes.fromhex(csum) + bytes([0x23, 0x01, 0x01])
    assert value.value[1] == bytes.fromhex(csum) + bytes([0xAC, 0x02, 0xAC, 0x02, 0x03])


def test_entry_without_type_is_content() -> None:
    raw = bytes(32) + bytes([5, 7])
    assert decode_sizes(Variant("aay", [raw])) == [SizeEntry(Checksum("00" * 32), 5, 7, ObjectType.FILE)]


@pytest.mark.parametrize("raw", [bytes(31), bytes(32) + b"\x80", bytes(32) + b"\x01\x01\x63"])
def test_malformed_entries_are_refused(raw: bytes) -> None:
    with pytest.raises(FormatError):
        decode_sizes(Variant("aay", [raw]))
