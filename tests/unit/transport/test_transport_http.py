"""The pipelined HTTP fetcher, the httpx fetcher and the file fetcher against real local servers."""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from faulty import Faults, faulty_server
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import FetchError, NotFoundError
from bootree.transport import FetchConfig, Fetcher, open_fetcher
from bootree.transport.file import FileFetcher
from bootree.transport.http import PipelinedHttpFetcher, _split, _split_url
from bootree.transport.httpx_fetcher import HttpxFetcher
from bootree.transport.server import StaticServer

FAST = FetchConfig(read_timeout=1.0, connect_timeout=2.0, max_attempts=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "www"
    (d / "sub").mkdir(parents=True)
    for i in range(200):
        (d / "sub" / f"f{i}").write_bytes(bytes([i % 256]) * (i * 37))
    (d / "big").write_bytes(b"x" * 300_000)
    (d / "small").write_bytes(b"hello\n")
    return d


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def server(root: Path, faults: Faults) -> Iterator[StaticServer]:
    with faulty_server(root, faults, stall_seconds=2.5) as srv:
        yield srv


@pytest.fixture(params=["pipelined", "httpx"])
def fetcher(request: pytest.FixtureRequest) -> Iterator[Fetcher]:
    f: Fetcher = PipelinedHttpFetcher(FAST) if request.param == "pipelined" else HttpxFetcher(FAST)
    yield f
    f.close()


def test_fetch_and_many_in_flight(server: StaticServer, fetcher: Fetcher, root: Path) -> None:
    assert fetcher.fetch(f"{server.url}/small", max_length=100) == b"hello\n"
    for i in range(200):
        fetcher.submit(f"{server.url}/sub/f{i}", max_length=10_000, key=i)
    got = {}
    while fetcher.pending:
        c = fetcher.wait(timeout=10)
        assert c.error is None
        got[c.key] = c.data
    assert got == {i: (root / "sub" / f"f{i}").read_bytes() for i in range(200)}
    assert fetcher.stats.requests >= 201


def test_not_found(server: StaticServer, fetcher: Fetcher) -> None:
    with pytest.raises(NotFoundError):
        fetcher.fetch(f"{server.url}/nope", max_length=100)
    fetcher.submit(f"{server.url}/nope", max_length=100, key="k")
    c = fetcher.wait(timeout=10)
    assert isinstance(c.error, NotFoundError) and c.key == "k"


def test_size_bound(server: StaticServer, fetcher: Fetcher) -> None:
    with pytest.raises(FetchError, match="too large"):
        fetcher.fetch(f"{server.url}/big", max_length=1000)
    # the connection recovers for the next request
    assert fetcher.fetch(f"{server.url}/small", max_length=100) == b"hello\n"


def test_500_then_success(server: StaticServer, fetcher: Fetcher, faults: Faults) -> None:
    faults.add("/small", "500", count=2)
    assert fetcher.fetch(f"{server.url}/small", max_length=100) == b"hello\n"
    assert fetcher.stats.retries == 2


def test_500_forever_is_a_transient_error(server: StaticServer, fetcher: Fetcher, faults: Faults) -> None:
    faults.add("/small", "500", count=-1)
    with pytest.raises(FetchError, match="500") as info:
        fetcher.fetch(f"{server.url}/small", max_length=100)
    assert info.value.transient


def test_truncated_then_success(server: StaticServer, fetcher: Fetcher, faults: Faults) -> None:
    faults.add("/big", "truncate", count=1)
    assert fetcher.fetch(f"{server.url}/big", max_length=1_000_000) == b"x" * 300_000


def test_truncated_forever(server: StaticServer, fetcher: Fetcher, faults: Faults) -> None:
    faults.add("/big", "truncate", count=-1)
    with pytest.raises(FetchError):
        fetcher.fetch(f"{server.url}/big", max_length=1_000_000)


def test_stall_times_out(server: StaticServer, faults: Faults) -> None:
    faults.add("/small", "stall", count=-1)
    cfg = FetchConfig(read_timeout=0.3, max_attempts=2, backoff_base=0.01)
    with PipelinedHttpFetcher(cfg) as f, pytest.raises(FetchError, match=r"stalled|timed out"):
        f.fetch(f"{server.url}/small", max_length=100)


def test_stall_then_success(server: StaticServer, faults: Faults) -> None:
    faults.add("/small", "stall", count=1)
    cfg = FetchConfig(read_timeout=0.3, max_attempts=3, backoff_base=0.01)
    with PipelinedHttpFetcher(cfg) as f:
        assert f.fetch(f"{server.url}/small", max_length=100) == b"hello\n"


def test_chunked_body(server: StaticServer, fetcher: Fetcher, faults: Faults) -> None:
    faults.add("/sub/f100", "chunked", count=-1)
    assert fetcher.fetch(f"{server.url}/sub/f100", max_length=10_000) == bytes([100]) * 3700


def test_connection_refused(fetcher: Fetcher) -> None:
    with pytest.raises(FetchError):
        fetcher.fetch("http://127.0.0.1:9/x", max_length=10)


def test_http10_server(root: Path) -> None:
    """python's SimpleHTTPRequestHandler speaks HTTP/1.0 and closes after each response."""

    class H(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with PipelinedHttpFetcher(FAST) as f:
            for i in range(50):
                f.submit(f"http://127.0.0.1:{srv.server_address[1]}/sub/f{i}", max_length=10_000, key=i)
            n = 0
            while f.pending:
                c = f.wait(timeout=10)
                assert c.error is None and c.data == bytes([c.key]) * (c.key * 37)  # type: ignore[operator]
                n += 1
            assert n == 50
    finally:
        srv.shutdown()
        srv.server_close()


def test_server_range_requests(server: StaticServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("GET", "/small", headers={"Range": "bytes=1-3"})
    r = conn.getresponse()
    assert r.status == 206 and r.read() == b"ell"
    assert r.getheader("Content-Range") == "bytes 1-3/6"
    conn.request("GET", "/small", headers={"Range": "bytes=-2"})
    r = conn.getresponse()
    assert r.status == 206 and r.read() == b"o\n"
    conn.request("GET", "/small", headers={"Range": "bytes=10-"})
    r = conn.getresponse()
    assert r.status == 416
    r.read()
    conn.request("GET", "/../../etc/passwd")
    r = conn.getresponse()
    assert r.status == 404
    r.read()
    conn.request("HEAD", "/small")
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Length") == "6"
    conn.close()


def test_file_fetcher(root: Path) -> None:
    f = FileFetcher()
    assert f.fetch((root / "small").as_uri(), max_length=10) == b"hello\n"
    with pytest.raises(NotFoundError):
        f.fetch((root / "nope").as_uri(), max_length=10)
    with pytest.raises(FetchError, match="too large"):
        f.fetch((root / "big").as_uri(), max_length=10)
    f.submit((root / "small").as_uri(), max_length=10, key=1)
    assert f.wait().data == b"hello\n"


def test_open_fetcher_dispatch() -> None:
    assert isinstance(open_fetcher("file:///tmp"), FileFetcher)
    f = open_fetcher("http://127.0.0.1:1/")
    assert isinstance(f, PipelinedHttpFetcher)
    f.close()
    with pytest.raises(FetchError, match="Invalid URI scheme"):  # ostree's wording
        open_fetcher("gopher://x/")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["http", "https", "HTTP", "ftp"]),
    st.sampled_from(["127.0.0.1", "127.0.0.1:8080", "[::1]:81", "u:p@host.example", "h"]),
    st.lists(st.text(alphabet="ab-_.%20 ?#/~é", min_size=0, max_size=6), max_size=4),
)
def test_split_fast_path_agrees_with_urlsplit(scheme: str, netloc: str, segments: list[str]) -> None:
    # Object URLs take a cached fast path (directory parsed once, plain leaf appended): it must
    # give exactly what a full parse gives, or defer to it.
    url = f"{scheme}://{netloc}/" + "/".join(segments)
    try:
        want: object = _split_url(url)
    except (FetchError, ValueError, UnicodeError) as e:
        want = type(e)
    try:
        got: object = _split(url)
    except (FetchError, ValueError, UnicodeError) as e:
        got = type(e)
    assert got == want
