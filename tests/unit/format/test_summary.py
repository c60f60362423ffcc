"""The summary codec: exact bytes, ostree's conventions (LE size, BE timestamps, key order)."""

from __future__ import annotations

import pytest

from bootree.errors import FormatError
from bootree.format import gvariant
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit
from bootree.format.summary import SUMMARY_TYPE, Summary, SummaryRef, decode_summary_sig

TREE = Checksum("e2abaf5012d82badc138e734e5d7fc17f782ff4d959053407446082ec81f9a77")
META = Checksum("446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488")


def _commit(ts: int, version: str | None = None) -> bytes:
    md = (("version", Variant("s", version)),) if version else ()
    return Commit(root_tree=TREE, root_meta=META, timestamp=ts, metadata=md).to_bytes()


def test_build_matches_ostree_conventions() -> None:
    c1, c2 = _commit(1700000000, "1.2"), _commit(1700000001)
    s = Summary.build(
        {"test": (Checksum("aa" * 32), c1), "a/other": (Checksum("bb" * 32), c2)},
        mode="archive-z2",
        last_modified=1800000000,
    )
    assert [r.name for r in s.refs] == ["a/other", "test"]
    t = s.ref("test")
    assert t is not None and t.commit_size == len(c1) and t.version == "1.2" and t.timestamp == 1700000000
    assert [k for k, _ in t.metadata] == ["ostree.commit.version", "ostree.commit.timestamp"]
    assert [k for k, _ in s.metadata] == [
        "ostree.summary.mode",
        "ostree.summary.last-modified",
        "ostree.summary.tombstone-commits",
        "ostree.summary.indexed-deltas",
    ]
    data = s.to_bytes()
    # the per-ref commit size is little-endian, the timestamp big-endian
    raw = gvariant.decode(SUMMARY_TYPE, data)
    assert raw[0][1][1][0] == len(c1)
    assert raw[0][1][1][2][1][1].value.to_bytes(8, "little") == (1700000000).to_bytes(8, "big")
    assert Summary.from_bytes(data) == s
    assert s.mode == "archive-z2" and s.last_modified == 1800000000


def test_deltas_and_extra_metadata_order() -> None:
    s = Summary.build(
        {},
        mode="archive-z2",
        last_modified=1,
        deltas={"b" * 64: b"\x02" * 32, "a" * 64: b"\x01" * 32},
        extra_metadata=[("foo", Variant("s", "bar"))],
    )
    keys = [k for k, _ in s.metadata]
    assert (
        keys.index("ostree.static-deltas") < keys.index("ostree.summary.indexed-deltas") < keys.index("foo")
    )
    assert s.static_deltas == {"a" * 64: b"\x01" * 32, "b" * 64: b"\x02" * 32}
    assert Summary.from_bytes(s.to_bytes()).to_bytes() == s.to_bytes()


def test_unknown_keys_survive() -> None:
    s = Summary(
        (SummaryRef("x", Checksum("cc" * 32), 10, (("custom", Variant("u", 7)),)),),
        (("org.example.key", Variant("as", ["a", "b"])),),
    )
    assert Summary.from_bytes(s.to_bytes()) == s


def test_unsorted_refs_rejected() -> None:
    with pytest.raises(FormatError):
        Summary((SummaryRef("b", Checksum("cc" * 32), 1), SummaryRef("a", Checksum("cc" * 32), 1)))
    bad = gvariant.encode(SUMMARY_TYPE, ([("b", (1, b"\xcc" * 32, [])), ("a", (1, b"\xcc" * 32, []))], []))
    with pytest.raises(FormatError):
        Summary.from_bytes(bad)


def test_garbage_rejected() -> None:
    with pytest.raises(FormatError):
        Summary.from_bytes(b"\x01\x02\x03 not a summary")


def test_summary_sig() -> None:
    data = gvariant.encode("a{sv}", [("ostree.gpgsigs", Variant("aay", [b"sig1", b"sig2"]))])
    assert decode_summary_sig(data) == {"ostree.gpgsigs": [b"sig1", b"sig2"]}
