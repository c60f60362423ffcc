"""``dirtree_children``: the checksums a reachability walk reads, proven against the full parser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format.checksum import Checksum
from bootree.format.objects import DirTree, dirtree_children

csums = st.binary(min_size=32, max_size=32).map(lambda b: Checksum(b.hex()))
#: Names long enough that some entries need 2-byte framing offsets.
names = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=["Cs"]), min_size=1, max_size=300).filter(
    lambda s: s not in (".", "..")
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, csums, max_size=12), st.dictionaries(names, st.tuples(csums, csums), max_size=8))
def test_children_are_the_parsed_trees_checksums(files: dict[str, Checksum], dirs: dict[str, tuple[Checksum, Checksum]]) -> None:
    dirs = {k: v for k, v in dirs.items() if k not in files}
    data = DirTree.build(files, dirs).to_bytes()
    tree = DirTree.from_bytes(data)
    got_files, got_dirs = dirtree_children(data)
    assert got_files == [c for _, c in tree.files]
    assert got_dirs == [(t, m) for _, t, m in tree.dirs]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_format_error_or_yields_32_byte_checksums(data: bytes) -> None:
    try:
        files, dirs = dirtree_children(data)
    except FormatError:
        return
    assert all(len(c) == 64 for c in files)
    assert all(len(t) == 64 and len(m) == 64 for t, m in dirs)


def test_truncated_and_bad_checksum_lengths_are_refused() -> None:
    data = DirTree.build({"a": Checksum("ab" * 32)}, {"d": (Checksum("cd" * 32), Checksum("ef" * 32))}).to_bytes()
    for cut in (1, 2, 5, len(data) // 2):
        try:
            dirtree_children(data[:-cut])
        except FormatError:
            continue
        raise AssertionError(f"a dirtree cut by {cut} bytes was accepted")
    # A 31-byte "checksum": the framing says the entry is one byte short.
    entry = b"a\0" + b"\xab" * 31 + b"\x02"  # name, 31 bytes, the name's end offset
    bad = entry + bytes([len(entry)])  # a files array of that one element
    try:
        dirtree_children(bad + bytes([len(bad)]))
    except FormatError:
        return
    raise AssertionError("a 31-byte checksum was accepted")
