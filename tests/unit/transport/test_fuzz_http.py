"""Fuzzing the HTTP/1.1 response parser and the redirect-target parser (issue 10 item 3).

A server is untrusted: whatever bytes it sends, split wherever the network splits them,
:class:`~bootree.transport.http1.ResponseParser` returns events or raises its
``ProtocolError`` (which the fetcher turns into a retry and, in the end, a ``FetchError``),
nothing else; bodies never exceed what the head announced. A ``Location`` header of a redirect
is joined and split the same way: ``FetchError`` or a request target, nothing else.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.errors import BootreeError
from bootree.transport import FetchConfig
from bootree.transport.base import redirect_target
from bootree.transport.http import PipelinedHttpFetcher, _split
from bootree.transport.http1 import Body, End, Head, ProtocolError, ResponseParser

N = int(os.environ.get("BOOTREE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nTrailer: t\r\n\r\n",
    b"HTTP/1.0 404 Not Found\r\n\r\nmissing",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 301 Moved\r\nLocation: /other\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
]


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["set", "cut", "insert", "digits"]))
        if op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 10))]
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b":", b" ", b"-1", b"ffffffffff", b"\x00", b"\xff",
                                                  b"chunked", b"Content-Length: 99999999999\r\n"]))
        else:
            data[pos:pos] = str(draw(st.integers(-10**12, 10**12))).encode()
        if not data:
            break
    return bytes(data)


@FUZZ
@given(responses(), st.lists(st.integers(0, 400), max_size=6))
def test_response_parser(data: bytes, cuts: list[int]) -> None:
    parser = ResponseParser()
    events = []
    pieces, last = [], 0
    for c in sorted(set(cuts)):
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    try:
        for piece in pieces:
            events.extend(parser.feed(piece))
        events.extend(parser.feed_eof())
    except ProtocolError:
        return
    head: Head | None = None
    got = 0
    for ev in events:
        if isinstance(ev, Head):
            head, got = ev, 0
            assert 200 <= ev.status < 1000 and all(isinstance(v, str) for v in ev.headers.values())
        elif isinstance(ev, Body):
            assert head is not None
            got += len(ev.data)
            assert head.length is None or got <= head.length
        else:
            assert isinstance(ev, End) and head is not None
            assert head.length is None or got == head.length


_URLISH = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["http://h:99999/", "http://h:abc/x", "http://[::1/", "http://[zz]/", "https://ü.example/ä b",
                     "http://a@b:c@d/", "//other:0/x", "http://h/%zz?q#f", "ftp://x/", "http:///nohost",
                     "http://h:-1/", "http://h\x00/", "http://h:8080\r\nX: y/"]),
)


@FUZZ
@given(_URLISH)
def test_redirect_targets(location: str) -> None:
    try:
        target = redirect_target("http://127.0.0.1:8080/repo/objects/ab/cd.filez", location)
        (scheme, host, port), path, host_header = _split(target)
    except BootreeError:
        return
    assert scheme in ("http", "https") and host and 0 < port < 65536
    assert all(32 < b < 127 for b in path), path
    host_header.encode("ascii")


def test_unparseable_redirect_fails_the_request_instead_of_hanging() -> None:
    """Found by the fuzz pass: ``Location: http://[`` made urljoin raise in the connection thread."""
    import socket
    import threading

    from bootree.errors import FetchError

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://[\r\nContent-Length: 0\r\n\r\n")
            conn.recv(65536)  # until the client closes

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    result: list[BaseException | bytes] = []

    def fetch() -> None:
        with PipelinedHttpFetcher(FetchConfig(max_attempts=1)) as f:  # type: ignore[abstract]
            try:
                result.append(f.fetch(f"http://127.0.0.1:{port}/x", max_length=100))
            except FetchError as e:
                result.append(e)

    ft = threading.Thread(target=fetch, daemon=True)
    ft.start()
    ft.join(10)
    srv.close()
    assert result and isinstance(result[0], FetchError) and "redirect" in str(result[0])
