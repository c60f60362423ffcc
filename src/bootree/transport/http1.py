"""HTTP/1.1 response framing as a pure function over bytes (sans-IO, the h11 shape).

Layer: transport. No sockets here: :class:`ResponseParser` is fed whatever bytes arrived and
returns the framing events they complete, so the parser is tested on bytes (split at every
position, hypothesis) and the connection code in :mod:`bootree.transport.http` only moves bytes
between a socket and this object. One parser serves one connection: pipelined responses follow
each other in the same byte stream, and bytes left over after one response start the next.

What it understands, deliberately little (a static file server's answers): a status line
``HTTP/1.x NNN``, header lines, interim ``1xx`` responses (skipped), and the three body framings
of RFC 9112 §6: ``Transfer-Encoding: chunked``, ``Content-Length``, and read-until-close. Bodies
of 204 and 304 are empty. Anything else is a :class:`ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Body", "End", "Event", "Head", "ProtocolError", "ResponseParser"]

#: Longest status or header line accepted (a static server's are far shorter).
MAX_LINE = 16 * 1024
#: Most header lines accepted in one response.
MAX_HEADERS = 100


class ProtocolError(ValueError):
    """The bytes are not a well-formed HTTP/1.x response, or it was cut off."""


@dataclass(frozen=True, slots=True)
class Head:
    """Status line and headers of a final (non-1xx) response.

    ``length`` is the announced body size (``None``: chunked or until close); ``close`` says
    the connection cannot carry another response after this one.
    """

    status: int
    headers: dict[str, str]
    http10: bool
    close: bool
    length: int | None


@dataclass(frozen=True, slots=True)
class Body:
    """A piece of the current response's body (already de-chunked).

    Fed a ``memoryview``, the parser may hand body bytes on as a view of it (no copy): such a
    ``data`` is valid only until the caller reuses the buffer it fed.
    """

    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class End:
    """The current response is complete; the next bytes belong to the next response."""


Event = Head | Body | End


class _State(Enum):
    HEAD = "head"
    LENGTH = "length"
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_CRLF = "chunk-crlf"
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until-close"
    CLOSED = "closed"


class ResponseParser:
    """Incremental parser of the responses on one connection.

    Call :meth:`feed` with received bytes and :meth:`feed_eof` when the peer closed; both return
    the events completed so far, in order. After a :class:`ProtocolError` the connection is
    unusable. :attr:`idle` is true between responses (nothing buffered, no response started),
    which is what tells a clean close of a kept-alive connection from a truncation.

    Bytes not yet parsed wait in one buffer that is reused, never shrunk: consumed bytes only
    advance an offset (``_pos``), and the unparsed rest moves to the front when new bytes would
    not fit. (A ``bytearray`` consumed with ``del buf[:n]`` reallocates itself each time it
    falls under half its size: on a pull that was several 128-256 KiB allocations, each a fresh
    ``mmap`` with its pages faulted in, per received read.)
    """

    __slots__ = ("_buf", "_close", "_end", "_pos", "_remaining", "_state")

    def __init__(self) -> None:
        self._buf = bytearray()
        #: Unparsed bytes are ``_buf[_pos:_end]``; ``_buf`` beyond ``_end`` is spare room.
        self._pos = 0
        self._end = 0
        self._state = _State.HEAD
        self._remaining = 0
        self._close = False

    @property
    def idle(self) -> bool:
        """No response in progress and no byte of the next one received."""
        return self._state is _State.HEAD and self._pos == self._end

    @property
    def closed(self) -> bool:
        """A response that ends the connection is complete: nothing more will be parsed."""
        return self._state is _State.CLOSED

    @property
    def in_body(self) -> bool:
        """The head of the current response has been parsed and its body has not ended."""
        return self._state not in (_State.HEAD, _State.CLOSED)

    def feed(self, data: bytes | memoryview) -> list[Event]:
        """Consume ``data``; the events it completes (body pieces may be views of ``data``).

        Raises:
            ProtocolError: for malformed framing.
        """
        out: list[Event] = []
        if self._state is _State.CLOSED:
            return out  # bytes after a response that closes the connection are ignored
        if self._state is _State.LENGTH and self._pos == self._end and data:
            # The bulk of a pull: body bytes handed on without a copy into the buffer.
            n = self._remaining
            if len(data) <= n:
                out.append(Body(data))
                self._remaining -= len(data)
                if not self._remaining:
                    self._end_response(out)
                return out
            out.append(Body(data[:n]))
            self._remaining = 0
            self._end_response(out)
            data = data[n:]
            if self.closed:
                return out
        if data:
            self._append(data)
        while self._step(out):
            pass
        return out

    def _append(self, data: bytes | memoryview) -> None:
        """Copy ``data`` behind the unparsed bytes, reusing the buffer's room."""
        buf, pos, end, n = self._buf, self._pos, self._end, len(data)
        if pos == end:
            pos = end = 0
        if end + n > len(buf):
            if pos:  # move the unparsed rest to the front (same length: in place, no allocation)
                buf[: end - pos] = buf[pos:end]
                end -= pos
                pos = 0
            if end + n > len(buf):
                buf.extend(bytes(end + n - len(buf)))
        # Through a memoryview: ``buf[a:b] = view`` would first copy the view into a temporary
        # bytearray (CPython does that for any value that is not a bytearray).
        with memoryview(buf) as room:
            room[end : end + n] = data
        self._pos, self._end = pos, end + n

    def feed_eof(self) -> list[Event]:
        """The peer closed the connection: end a read-until-close body, or report a cut.

        Raises:
            ProtocolError: if a response was in progress (truncated headers or body).
        """
        out = self.feed(b"")
        if self._state is _State.UNTIL_CLOSE:
            if self._pos < self._end:
                out.append(Body(self._take(self._end - self._pos)))
            out.append(End())
            self._state = _State.CLOSED
            return out
        if self._state is _State.LENGTH:
            raise ProtocolError(f"truncated response: {self._remaining} body bytes missing")
        if self._state is not _State.HEAD and self._state is not _State.CLOSED:
            raise ProtocolError("truncated chunked response")
        if self._pos < self._end:
            raise ProtocolError("connection closed in the response headers")
        return out

    # --- states ---------------------------------------------------------------------------------

    def _take(self, n: int) -> bytes:
        """The next ``n`` unparsed bytes, consumed (a copy: the buffer is reused)."""
        pos = self._pos
        self._pos = pos + n
        return bytes(memoryview(self._buf)[pos : pos + n])

    def _step(self, out: list[Event]) -> bool:
        """Advance by one framing element if the buffer holds it; whether to continue."""
        state = self._state
        avail = self._end - self._pos
        if state is _State.LENGTH:
            if not avail:
                return False
            n = min(self._remaining, avail)
            out.append(Body(self._take(n)))
            self._remaining -= n
            if self._remaining == 0:
                self._end_response(out)
            return self._pos < self._end
        if state is _State.HEAD:
            return self._head(out)
        if state is _State.UNTIL_CLOSE:
            if avail:
                out.append(Body(self._take(avail)))
            return False
        if state is _State.CHUNK_DATA:
            if not avail:
                return False
            n = min(self._remaining, avail)
            out.append(Body(self._take(n)))
            self._remaining -= n
            if self._remaining == 0:
                self._state = _State.CHUNK_CRLF
            return True
        if state is _State.CLOSED:
            return False
        line = self._line()
        if line is None:
            return False
        if state is _State.CHUNK_SIZE:
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise ProtocolError(f"bad chunk size line {bytes(line[:40])!r}")
            size = int(size_text, 16)
            if size == 0:
                self._state = _State.TRAILERS
            else:
                self._remaining = size
                self._state = _State.CHUNK_DATA
        elif state is _State.CHUNK_CRLF:
            if line:
                raise ProtocolError("chunk not followed by CRLF")
            self._state = _State.CHUNK_SIZE
        elif state is _State.TRAILERS and not line:
            self._end_response(out)
        return True

    def _line(self) -> bytes | None:
        """One CRLF- (or LF-) terminated line without its terminator, or None if incomplete."""
        buf, pos, end = self._buf, self._pos, self._end
        i = buf.find(b"\n", pos, end)
        if i < 0:
            if end - pos > MAX_LINE:
                raise ProtocolError("line too long")
            return None
        if i - pos > MAX_LINE:
            raise ProtocolError("line too long")
        stop = i - 1 if i > pos and buf[i - 1] == 13 else i
        line = bytes(memoryview(buf)[pos:stop])
        self._pos = i + 1
        return line

    def _head(self, out: list[Event]) -> bool:
        buf, pos, stop = self._buf, self._pos, self._end
        end = buf.find(b"\r\n\r\n", pos, stop)
        if end >= 0:
            text = str(memoryview(buf)[pos:end], "latin-1")
            self._pos = end + 4
        else:
            end = buf.find(b"\n\n", pos, stop)  # bare-LF servers
            if end < 0:
                if stop - pos > MAX_LINE * (MAX_HEADERS + 1):
                    raise ProtocolError("response head too long")
                if stop - (max(buf.rfind(b"\n", pos, stop), pos - 1) + 1) > MAX_LINE:
                    raise ProtocolError("header line too long")
                prefix = b"HTTP/1."
                seen = buf[pos : min(stop, pos + len(prefix))]
                if seen and not prefix.startswith(seen):
                    raise ProtocolError(f"not an HTTP/1.x response: {bytes(buf[pos : min(stop, pos + 40)])!r}")
                return False
            text = str(memoryview(buf)[pos:end], "latin-1")
            self._pos = end + 2
        # One decode for the whole head: header parsing is per-request cost on a pull.
        lines = text.split("\n")
        status_line = lines[0].rstrip("\r")
        if len(status_line) > MAX_LINE:
            raise ProtocolError("status line too long")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x response: {status_line[:40]!r}")
        code = rest[:3]
        if len(code) != 3 or not code.isdigit() or not code.isascii() or (len(rest) > 3 and rest[3] != " "):
            raise ProtocolError(f"bad status line {status_line[:40]!r}")
        status = int(code)
        if len(lines) - 1 > MAX_HEADERS:
            raise ProtocolError("too many response headers")
        headers: dict[str, str] = {}
        for h in lines[1:]:
            if len(h) > MAX_LINE:
                raise ProtocolError("header line too long")
            name, sep, value = h.partition(":")
            name = name.strip()
            if not sep or not name:
                raise ProtocolError(f"malformed header line {h[:40]!r}")
            headers[name.lower()] = value.strip()
        if 100 <= status < 200:
            return True  # interim response (100 Continue): the real one follows
        http10 = version == "HTTP/1.0"
        conn = headers.get("connection", "").lower()
        close = "close" in conn or http10
        te = headers.get("transfer-encoding", "").lower()
        length: int | None = None
        if status in (204, 304):
            length = 0
        elif "chunked" in te:
            self._state = _State.CHUNK_SIZE
        elif "content-length" in headers:
            text = headers["content-length"]
            if not (text.isdigit() and text.isascii()):
                raise ProtocolError(f"bad content-length {text[:20]!r}")
            length = int(text)
        else:
            self._state = _State.UNTIL_CLOSE
            close = True
        self._close = close
        out.append(Head(status, headers, http10, close, length))
        if length is not None:
            self._remaining = length
            if length == 0:
                self._end_response(out)
            else:
                self._state = _State.LENGTH
        return self._pos < self._end and self._state is not _State.CLOSED

    def _end_response(self, out: list[Event]) -> None:
        out.append(End())
        self._state = _State.CLOSED if self._close else _State.HEAD
        if self._close:
            self._pos = self._end = 0  # whatever follows a closing response is ignored
