"""The pure HTTP/1.1 response parser, on bytes: every framing, every split point, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.transport.http1 import Body, End, Event, Head, ProtocolError, ResponseParser


def _feed_all(parts: list[bytes], eof: bool = False) -> list[Event]:
    p = ResponseParser()
    out: list[Event] = []
    for part in parts:
        out.extend(p.feed(part))
    if eof:
        out.extend(p.feed_eof())
    return out


def _responses(events: list[Event]) -> list[tuple[int, bytes]]:
    """(status, body) of each complete response, body pieces joined."""
    out: list[tuple[int, bytes]] = []
    status, body = -1, b""
    for ev in events:
        if isinstance(ev, Head):
            status, body = ev.status, b""
        elif isinstance(ev, Body):
            body += ev.data
        else:
            out.append((status, body))
    return out


def _cl(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra) + body


def _chunked(body: bytes, size: int = 5) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += b"%x;ext=1\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\nTrailer: x\r\n\r\n"


def test_content_length_pipelined_responses() -> None:
    data = _cl(200, b"hello") + _cl(404, b"nope") + _cl(200, b"")
    events = _feed_all([data])
    assert _responses(events) == [(200, b"hello"), (404, b"nope"), (200, b"")]
    heads = [e for e in events if isinstance(e, Head)]
    assert [h.length for h in heads] == [5, 4, 0] and not any(h.close for h in heads)


def test_chunked_and_interim_and_204() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + _chunked(b"0123456789abc") + b"HTTP/1.1 204 No\r\n\r\n"
    assert _responses(_feed_all([data])) == [(200, b"0123456789abc"), (204, b"")]


def test_read_until_close_and_http10() -> None:
    data = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody bytes"
    events = _feed_all([data], eof=True)
    head = events[0]
    assert isinstance(head, Head) and head.http10 and head.close and head.length is None
    assert _responses(events) == [(200, b"body bytes")]


def test_connection_close_ignores_what_follows() -> None:
    data = _cl(200, b"ab", b"Connection: close\r\n") + b"garbage"
    events = _feed_all([data])
    assert _responses(events) == [(200, b"ab")] and isinstance(events[0], Head) and events[0].close


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "bad status"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "content-length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", "CRLF"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", "too many"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000, "too long"),
    ],
)
def test_malformed(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        _feed_all([data])


@pytest.mark.parametrize(
    "data",
    [_cl(200, b"hello")[:-2], _chunked(b"abcdefgh")[:-9], b"HTTP/1.1 200 OK\r\nContent-Le"],
)
def test_truncation_at_eof(data: bytes) -> None:
    p = ResponseParser()
    p.feed(data)
    with pytest.raises(ProtocolError):
        p.feed_eof()


def test_idle_between_responses() -> None:
    p = ResponseParser()
    assert p.idle
    p.feed(_cl(200, b"ab")[:10])
    assert not p.idle
    p.feed(_cl(200, b"ab")[10:])
    assert p.idle and p.feed_eof() == []


_BODIES = st.binary(max_size=300)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["cl", "chunked", "404"]), _BODIES), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_any_split_gives_the_same_responses(items: list[tuple[str, bytes]], cuts: list[int]) -> None:
    # Bytes arrive from a socket in arbitrary pieces: the parse must not depend on where.
    stream = b""
    want = []
    for kind, body in items:
        if kind == "cl":
            stream += _cl(200, body)
            want.append((200, body))
        elif kind == "chunked":
            stream += _chunked(body, size=7)
            want.append((200, body))
        else:
            stream += _cl(404, body[:20])
            want.append((404, body[:20]))
    points = sorted({c % (len(stream) + 1) for c in cuts})
    parts = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert _responses(_feed_all(parts, eof=True)) == want


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_garbage_only_raises_protocol_error(data: bytes, step: int) -> None:
    # Hostile bytes: events or ProtocolError, never another exception.
    p = ResponseParser()
    try:
        for i in range(0, len(data), step):
            p.feed(data[i : i + step])
        p.feed_eof()
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_after_valid_prefix(tail: bytes) -> None:
    p = ResponseParser()
    events = p.feed(_cl(200, b"ok"))
    assert isinstance(events[-1], End)
    try:
        p.feed(b"HTTP/1.1 " + tail)
        p.feed_eof()
    except ProtocolError:
        pass


def test_fed_from_one_reused_buffer_like_the_connection() -> None:
    """The fetcher reads every recv into one buffer and feeds views of it: bodies kept from
    one feed must not change when the buffer is overwritten by the next read."""
    bodies = [bytes([65 + i % 26]) * (100 + 37 * i) for i in range(40)]
    stream = b"".join(_cl(200, b) for b in bodies)
    recv = bytearray(1000)
    view = memoryview(recv)
    p = ResponseParser()
    kept: list[bytes | memoryview] = []
    got: list[bytes] = []
    current = b""
    for i in range(0, len(stream), len(recv)):
        piece = stream[i : i + len(recv)]
        recv[: len(piece)] = piece
        for ev in p.feed(view[: len(piece)]):
            if isinstance(ev, Body):
                kept.append(ev.data)
                current += ev.data  # what BodySink does before the next read
            elif isinstance(ev, End):
                got.append(current)
                current = b""
        recv[:] = b"\xff" * len(recv)  # the next read overwrites the buffer
    assert got == bodies
    # Pieces copied out of the parser's own buffer stay valid after later feeds.
    copied = [k for k in kept if isinstance(k, bytes)]
    assert copied and all(len(set(k)) == 1 for k in copied)
    # Its buffer is reused, not grown with the stream (one read plus a partial head at most).
    assert len(p._buf) <= 2 * len(recv)
