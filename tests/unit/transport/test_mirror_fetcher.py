"""MirrorFetcher: each request goes to the first mirror that has the file."""

from __future__ import annotations

import pytest

from bootree.errors import NotFoundError
from bootree.transport.memory import MemoryFetcher
from bootree.transport.mirrors import MirrorFetcher, parse_mirrorlist

MIRRORS = ["http://one/none", "http://one/repo", "http://two/repo"]


def test_falls_through_to_the_mirror_that_has_the_file() -> None:
    inner = MemoryFetcher({"http://one/repo/config": b"c1", "http://two/repo/config": b"c2", "http://two/repo/obj": b"o"})
    f = MirrorFetcher(inner, [MIRRORS])
    assert f.fetch("http://one/none/config", max_length=10) == b"c1"
    for i, path in enumerate(["obj", "config"]):
        f.submit(f"http://one/none/{path}", max_length=10, key=i)
    got = {}
    while f.pending:
        done = f.wait()
        got[done.key] = (done.data, done.error)
    assert got == {0: (b"o", None), 1: (b"c1", None)}
    assert "http://one/repo/obj" in inner.hits and "http://two/repo/obj" in inner.hits


def test_missing_everywhere_is_not_found_and_other_urls_pass_through() -> None:
    inner = MemoryFetcher({"http://elsewhere/x": b"x"})
    f = MirrorFetcher(inner, [MIRRORS])
    with pytest.raises(NotFoundError):
        f.fetch("http://one/none/missing", max_length=10)
    f.submit("http://one/none/missing", max_length=10, key="k")
    done = f.wait()
    assert done.key == "k" and isinstance(done.error, NotFoundError)
    assert inner.hits[-3:] == [m + "/missing" for m in MIRRORS]
    assert f.fetch("http://elsewhere/x", max_length=10) == b"x"


def test_parse_mirrorlist() -> None:
    assert parse_mirrorlist("\n# c\nhttp://a\n\n http://b \n") == ["http://a", "http://b"]
