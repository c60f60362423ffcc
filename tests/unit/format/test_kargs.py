"""Kernel command-line editing with libostree's replace/append/delete rules."""

from __future__ import annotations

import pytest

from bootree.errors import FormatError
from bootree.format.kargs import Kargs, split_cmdline


def test_parse_round_trip_keeps_flags_empty_values_and_quotes() -> None:
    line = 'root=LABEL=root quiet console= foo="a b" x=1 x=2'
    k = Kargs.parse(line)
    assert str(k) == line
    assert k.args[1] == ("quiet", None)
    assert k.args[2] == ("console", "")
    assert k.get("root") == "LABEL=root"
    assert k.get_all("x") == ["1", "2"]
    assert split_cmdline('  a  "b c"\td ') == ["a", '"b c"', "d"]


def test_replace_sets_first_position_and_drops_repeats() -> None:
    k = Kargs.parse("a=1 x=1 b x=2")
    assert str(k.replace("x=9")) == "a=1 x=9 b"
    assert str(k.replace("new=1")) == "a=1 x=1 b x=2 new=1"
    assert str(k.replace("b=3")) == "a=1 x=1 b=3 x=2"
    assert str(Kargs().replace_all(["root=LABEL=root", "quiet"])) == "root=LABEL=root quiet"


def test_append_allows_duplicates() -> None:
    assert str(Kargs.parse("x=1").append("x=2")) == "x=1 x=2"
    assert str(Kargs.parse("x=1").append_if_missing("x=1")) == "x=1"
    assert str(Kargs.parse("x=1").append_if_missing("x=2")) == "x=1 x=2"


def test_delete_rules() -> None:
    k = Kargs.parse("a x=1 x=2 y=")
    assert str(k.delete("x=2")) == "a x=1 y="
    assert str(k.delete("a")) == "x=1 x=2 y="
    assert str(k.delete("y=")) == "a x=1 x=2"
    with pytest.raises(FormatError, match="multiple values"):
        k.delete("x")
    with pytest.raises(FormatError):
        k.delete("nope")
    with pytest.raises(FormatError):
        k.delete("x=3")
    assert str(k.delete_if_present("x=1")) == "a x=2 y="
    assert str(k.without("x")) == "a y="


def test_empty_key_is_rejected() -> None:
    with pytest.raises(FormatError):
        Kargs.parse("=1")
