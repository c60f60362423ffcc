"""metalink= and mirrorlist= remote URLs: the metalink parser and checks, and their resolution."""

from __future__ import annotations

import hashlib

import pytest

from bootree.errors import NotFoundError, RemoteError
from bootree.pull.mirrors import parse_metalink, resolve_metalink, resolve_mirrorlist
from bootree.transport.memory import MemoryFetcher

SUMMARY = b"the summary bytes"


def metalink(summary: bytes = SUMMARY, *, hashes: str | None = None, urls: str | None = None, extra: str = "") -> bytes:
    if hashes is None:
        hashes = (
            f'<hash type="md5">{hashlib.md5(summary).hexdigest()}</hash>'
            f'<hash type="sha256">{hashlib.sha256(summary).hexdigest()}</hash>'
            f'<hash type="sha512">{hashlib.sha512(summary).hexdigest()}</hash>'
        )
    if urls is None:
        urls = (
            '<url protocol="http" preference="98">http://m/good/summary</url>'
            '<url protocol="http" preference="100">http://m/bad/summary</url>'
            '<url protocol="http" preference="99">http://m/missing/summary</url>'
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<metalink version="3.0" xmlns="http://www.metalinker.org/">'
        f"{extra}<files><file name=\"summary\"><size>{len(summary)}</size><verification>{hashes}</verification>"
        f"<resources maxconnections=\"1\">{urls}</resources></file></files>{extra}</metalink>"
    ).encode()


def test_parse_orders_urls_and_picks_the_strongest_hash() -> None:
    entry = parse_metalink(metalink(extra="<deeply><nested>hello</nested></deeply>"))
    assert entry.urls == ("http://m/bad/summary", "http://m/missing/summary", "http://m/good/summary")
    assert entry.hash == ("sha512", hashlib.sha512(SUMMARY).hexdigest())
    assert entry.size == len(SUMMARY)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (b"bacon\n", "Document must begin with an element"),
        (metalink(hashes='<hash type="sha512">bacon</hash>'), "Invalid hash digest for sha512"),
        (metalink(hashes=f'<hash type="md5">{hashlib.md5(SUMMARY).hexdigest()}</hash>'), "No <verification> with known"),
        (metalink(urls=""), "No <url method=> elements"),
        (b"<metalink><files>", "malformed"),
    ],
)
def test_parse_errors_read_as_ostree(doc: bytes, words: str) -> None:
    with pytest.raises(RemoteError, match=words):
        parse_metalink(doc)


def test_resolve_tries_urls_until_size_and_hash_match() -> None:
    f = MemoryFetcher({"http://ml/m.xml": metalink(), "http://m/bad/summary": b"broken", "http://m/good/summary": SUMMARY})
    assert resolve_metalink(f, "http://ml/m.xml", 1 << 20) == ("http://m/good", SUMMARY)


def test_resolve_reports_the_last_urls_error() -> None:
    files = {"http://ml/m.xml": metalink(), "http://m/bad/summary": b"broken", "http://m/good/summary": b"moo"}
    with pytest.raises(RemoteError, match="Expected size is 17 bytes but content is 3 bytes"):
        resolve_metalink(MemoryFetcher(files), "http://ml/m.xml", 1 << 20)
    files["http://m/good/summary"] = b"x" * len(SUMMARY)
    with pytest.raises(RemoteError, match=r"Expected checksum is .* but actual is"):
        resolve_metalink(MemoryFetcher(files), "http://ml/m.xml", 1 << 20)


def test_mirrorlist() -> None:
    f = MemoryFetcher({"http://l/list": b"\n\n# a comment\nhttp://a/repo\n  http://b/repo  \n\n"})
    assert resolve_mirrorlist(f, "http://l/list") == ["http://a/repo", "http://b/repo"]
    with pytest.raises(RemoteError, match="lists no mirrors"):
        resolve_mirrorlist(MemoryFetcher({"http://l/list": b"\n"}), "http://l/list")
    with pytest.raises(NotFoundError):
        resolve_mirrorlist(MemoryFetcher({}), "http://l/list")
