"""GVariant text: the forms ostree's --add-metadata users type, GLib's printing, and round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import GVariantError
from bootree.format.gvariant import Variant
from bootree.format.gvtext import parse_text, print_text

PARSED: list[tuple[str, str, Any]] = [
    ("@a{sv} {}", "a{sv}", []),
    ("@u 5", "u", 5),
    ("uint64 5", "t", 5),
    ("'value'", "s", "value"),
    ('"it\'s"', "s", "it's"),
    ("true", "b", True),
    ("42", "i", 42),
    ("-1.5", "d", -1.5),
    ("0x10", "i", 16),
    ("['a', 'b']", "as", ["a", "b"]),
    ("@as []", "as", []),
    ("{'k': <5>}", "a{sv}", [("k", Variant("i", 5))]),
    ("(1, 'x', true)", "(isb)", (1, "x", True)),
    ("(5,)", "(i)", (5,)),
    ("()", "()", ()),
    ("b'ab'", "ay", b"ab\0"),
    ("@ay []", "ay", b""),
    ("just 5", "mi", 5),
    ("@ms nothing", "ms", None),
    ("<@a{sv} {}>", "v", Variant("a{sv}", [])),
    ("[uint64 1, 2]", "at", [1, 2]),
    ("'a\\nb\\u00e9'", "s", "a\nb\u00e9"),
    ("objectpath '/a'", "o", "/a"),
]


@pytest.mark.parametrize(("text", "type_string", "value"), PARSED)
def test_parse(text: str, type_string: str, value: Any) -> None:
    assert parse_text(text) == Variant(type_string, value)


@pytest.mark.parametrize(
    "text", ["[]", "{}", "nothing", "foo", "'open", "@u -1", "byte 256", "1 2", "[1, 'a']", "@(ii) (1,)", "{<1>: 2}"]
)
def test_rejects(text: str) -> None:
    with pytest.raises(GVariantError):
        parse_text(text)


# What g_variant_print(value, FALSE) and (value, TRUE) print (GLib 2.74, as ostree's summary
# --view and --raw show them).
PRINTED: list[tuple[str, Any, str, str]] = [
    ("a{sv}", [], "{}", "@a{sv} {}"),
    ("u", 5, "5", "uint32 5"),
    ("s", "str", "'str'", "'str'"),
    ("a{sv}", [("a", Variant("t", 5)), ("b", Variant("s", "x"))], "{'a': <uint64 5>, 'b': <'x'>}",
     "{'a': <uint64 5>, 'b': <'x'>}"),
    ("ay", b"\x01\x02", "[0x01, 0x02]", "[byte 0x01, 0x02]"),
    ("ay", b"ab\0", "b'ab'", "b'ab'"),
    ("(ts)", (1, "x"), "(1, 'x')", "(uint64 1, 'x')"),
    ("d", 1.0, "1.0", "1.0"),
    ("b", False, "false", "false"),
    ("as", [], "[]", "@as []"),
]


@pytest.mark.parametrize(("type_string", "value", "plain", "annotated"), PRINTED)
def test_print(type_string: str, value: Any, plain: str, annotated: str) -> None:
    assert print_text(type_string, value) == plain
    assert print_text(type_string, value, annotate=True) == annotated


_leaf = st.one_of(
    st.booleans().map(lambda b: Variant("b", b)),
    st.integers(-(2**31), 2**31 - 1).map(lambda i: Variant("i", i)),
    st.integers(0, 2**64 - 1).map(lambda i: Variant("t", i)),
    st.integers(0, 255).map(lambda i: Variant("y", i)),
    st.text(max_size=8).map(lambda s: Variant("s", s)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Variant("d", f)),
)


def _containers(children: st.SearchStrategy[Variant]) -> st.SearchStrategy[Variant]:
    return st.one_of(
        children.map(lambda v: Variant("v", v)),
        st.lists(children, min_size=1, max_size=3).map(lambda vs: Variant("(" + "".join(v.type for v in vs) + ")",
                                                                          tuple(v.value for v in vs))),
        st.lists(st.tuples(st.text(max_size=4), children), max_size=3).map(
            lambda kvs: Variant("a{sv}", [(k, v) for k, v in kvs])
        ),
    )


@settings(max_examples=200, deadline=None)
@given(st.recursive(_leaf, _containers, max_leaves=8))
def test_annotated_print_parses_back(v: Variant) -> None:
    assert parse_text(print_text(v.type, v.value, annotate=True)) == v
