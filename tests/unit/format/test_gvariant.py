"""GVariant codec: GLib's worked examples, round-trips (hypothesis) and strict normal form."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import GVariantError
from bootree.format.gvariant import Variant, decode, encode, parse_type

# Bytes produced by GLib itself (ostree-format.md §2.3).
GLIB_EXAMPLES: list[tuple[str, Any, str]] = [
    ("(su)", ("ab", 1), "61 62 00 00 01 00 00 00 03"),
    ("as", ["ab", "c"], "61 62 00 63 00 03 05"),
    ("a{sv}", [("k", Variant("u", 5))], "6b 00 00 00 00 00 00 00 05 00 00 00 00 75 02 0f"),
    ("(ssay)", ("a", "b", b""), "61 00 62 00 04 02"),
    ("(ayay)", (b"a", b"bc"), "61 62 63 01"),
    ("a(say)", [("a", b"\0\0")], "61 00 00 00 02 05"),
    ("ms", None, ""),
    ("ms", "hi", "68 69 00 00"),
    ("mu", 7, "07 00 00 00"),
    ("v", Variant("s", "x"), "78 00 00 73"),
    ("(yt)", (1, 2), "01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00"),
    ("()", (), "00"),
    ("b", True, "01"),
]


@pytest.mark.parametrize(("type_string", "value", "hexbytes"), GLIB_EXAMPLES)
def test_glib_examples(type_string: str, value: Any, hexbytes: str) -> None:
    data = bytes.fromhex(hexbytes.replace(" ", ""))
    assert encode(type_string, value) == data
    assert decode(type_string, data) == value


def test_two_byte_offsets() -> None:
    # A body over 255 bytes needs 2-byte framing offsets.
    value = ["x" * 200, "y" * 200]
    data = encode("as", value)
    assert len(data) == 402 + 4
    assert data[-4:] == (201).to_bytes(2, "little") + (402).to_bytes(2, "little")
    assert decode("as", data) == value


@pytest.mark.parametrize(
    ("type_string", "data", "why"),
    [
        ("(su)", bytes.fromhex("616200ff0100000003"), "non-zero padding"),
        ("as", bytes.fromhex("61620063000305") + b"", "fine"),
        ("b", b"\x02", "boolean 2"),
        ("s", b"abc", "no NUL"),
        ("s", b"a\0b\0", "interior NUL"),
        ("s", b"\xff\0", "not UTF-8"),
        ("ay", b"", "fine"),
        ("au", b"\x01\x00\x00", "length not a multiple"),
        ("as", b"ab\0\x09", "offset out of range"),
        ("(uu)", b"\0" * 7, "short fixed tuple"),
        ("mu", b"\0\0", "maybe of wrong size"),
        ("v", b"x\0\0zz", "bad variant type"),
    ],
)
def test_rejects_malformed(type_string: str, data: bytes, why: str) -> None:
    if why == "fine":
        decode(type_string, data)
        return
    with pytest.raises(GVariantError):
        decode(type_string, data)


def test_rejects_non_normal_offset_width() -> None:
    # ("ab", "c") as `as` with 2-byte offsets instead of 1: GLib reads it, but it is not normal.
    data = b"ab\0c\0" + (3).to_bytes(2, "little") + (5).to_bytes(2, "little")
    with pytest.raises(GVariantError):
        decode("as", data)


def test_parse_type_errors() -> None:
    for bad in ["", "(", "a", "{ss", "{vs}", "z", "uu"]:
        with pytest.raises(GVariantError):
            parse_type(bad)


# --- properties ------------------------------------------------------------------------------

_basic = {
    "y": st.integers(0, 255),
    "b": st.booleans(),
    "n": st.integers(-(2**15), 2**15 - 1),
    "q": st.integers(0, 2**16 - 1),
    "i": st.integers(-(2**31), 2**31 - 1),
    "u": st.integers(0, 2**32 - 1),
    "x": st.integers(-(2**63), 2**63 - 1),
    "t": st.integers(0, 2**64 - 1),
    "s": st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), max_size=20),
}


def _types(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(sorted(_basic))
    if depth == 0:
        return leaf
    inner = _types(depth - 1)
    return st.one_of(
        leaf,
        inner.map(lambda t: "a" + t),
        inner.map(lambda t: "m" + t),
        st.lists(inner, min_size=1, max_size=4).map(lambda ts: "(" + "".join(ts) + ")"),
        st.tuples(st.sampled_from("sut"), inner).map(lambda kv: "{" + kv[0] + kv[1] + "}").map(lambda t: "a" + t),
        st.just("ay"),
        st.just("a{sv}"),
    )


def _values(t: str) -> st.SearchStrategy[Any]:
    gt = parse_type(t)
    k = gt.kind
    if k in _basic:
        return _basic[k]
    if k == "a":
        child = gt.children[0].string
        if child == "y":
            return st.binary(max_size=40)
        return st.lists(_values(child), max_size=5)
    if k == "m":
        return st.one_of(st.none(), _values(gt.children[0].string))
    if k == "v":
        return st.sampled_from(["u", "s", "as", "(ss)"]).flatmap(lambda vt: _values(vt).map(lambda v: Variant(vt, v)))
    return st.tuples(*[_values(c.string) for c in gt.children])


@settings(max_examples=300, deadline=None)
@given(_types(3).flatmap(lambda t: st.tuples(st.just(t), _values(t))))
def test_roundtrip(tv: tuple[str, Any]) -> None:
    t, v = tv
    if parse_type(t).kind == "m" and parse_type(t).children[0].kind == "m":
        return  # nested maybes: None and Just(None) both valid, fine but not compared here
    data = encode(t, v)
    decoded = decode(t, data)
    assert encode(t, decoded) == data
    if not _has_nested_maybe(t):
        assert _norm(decoded) == _norm(v)


def _has_nested_maybe(t: str) -> bool:
    return "mm" in t


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, Variant):
        return ("v", v.type, _norm(v.value))
    return v


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["(a{sv}aya(say)sstayay)", "(a(say)a(sayay))", "(uuua(ayay))", "as", "a{sv}"]), st.binary(max_size=120))
def test_random_bytes_never_crash(t: str, data: bytes) -> None:
    # Arbitrary bytes either decode to a value that re-encodes to the same bytes, or raise
    # GVariantError: never another exception.
    try:
        value = decode(t, data)
    except GVariantError:
        return
    assert encode(t, value) == data
