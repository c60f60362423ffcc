"""Object names in ``objects/XX/``: the one-scan listing parser agrees with the per-name one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bootree.format.checksum import ObjectType, parse_object_name, parse_object_names

HEX = "0123456789abcdef"
_ext = st.sampled_from(["file", "filez", "dirtree", "dirmeta", "commit", "commitmeta", "tombstone-commit", "txt", "", "FILE"])
_stem = st.one_of(
    st.text(HEX, min_size=62, max_size=62),
    st.text(HEX + "ABx.-", min_size=60, max_size=64),
    st.text(min_size=0, max_size=70).filter(lambda s: "/" not in s and "\0" not in s),
)
_name = st.one_of(st.builds(lambda s, e: f"{s}.{e}" if e else s, _stem, _ext), st.text(max_size=80).filter(lambda s: "/" not in s))


@given(st.sampled_from(["ab", "00", "fF", "a", "abc", "zz"]), st.lists(_name, max_size=30))
def test_listing_parser_matches_per_name_parser(prefix: str, names: list[str]) -> None:
    """Tombstones (``.tombstone-commit``) are not listed: prune and fsck do not count them."""
    parsed = (parse_object_name(prefix, n) for n in names)
    expected = [r for r in parsed if r is not None and r[0] is not ObjectType.TOMBSTONE_COMMIT]
    assert list(parse_object_names(prefix, names)) == expected


def test_listing_parser_reads_every_type_and_skips_strays() -> None:
    stem = "c" * 62
    names = [f"{stem}.file", f"{stem}.dirtree", "tmp-123", f"{stem}.file.tmp", f"{stem[:-1]}.file", f"{stem}.filez"]
    assert list(parse_object_names("ab", names)) == [
        (ObjectType.FILE, "ab" + stem),
        (ObjectType.DIR_TREE, "ab" + stem),
        (ObjectType.FILE, "ab" + stem),
    ]
    assert list(parse_object_names("zz", names)) == []
