"""A small pipelined HTTP/1.1 client for fetching many static files from one server.

Layer: transport. Why not httpx (or ``http.client``) here: a pull is thousands of GETs of small
files from a dumb static server. Measured on loopback nginx with the benchmark corpus (13,200
objects, 179 MB, 2 cores): httpx with a thread pool took 11-19 s, ``http.client`` with threads
5.9 s, while this client with keep-alive pipelining (16-32 requests ahead on each of 1-4
connections) took 0.5-0.7 s. Python's per-request cost, not the network, is the bottleneck, and
pipelining plus a minimal parser removes most of it. httpx remains available
(:mod:`bootree.transport.httpx_fetcher`) for proxies.

What the client does, deliberately little: ``GET`` only (idempotent, so any unanswered request
can be resent on a new connection); ``Content-Length``, chunked and read-until-close bodies;
redirects; keep-alive with reconnects; TLS through :mod:`ssl`. The framing is parsed by the
pure :mod:`bootree.transport.http1` (this module only feeds it socket bytes); retries, status
classification and the size limit are :mod:`bootree.transport.base`'s. A connection-level fault
(reset, truncated body, a stall of ``read_timeout`` seconds, a transfer below the minimum rate)
fails the request at the head of the pipeline and the requests behind it are resent on a new
connection. ``docs/adr/0006-hand-written-http-client.md`` records why this client exists.
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field

from bootree.errors import FetchError
from bootree.transport import BodyStream, FetchConfig
from bootree.transport.base import BodySink, FetcherBase, LowSpeedGuard, Request
from bootree.transport.http1 import Body, Event, Head, ProtocolError, ResponseParser

__all__ = ["PipelinedHttpFetcher"]

log = logging.getLogger(__name__)

_MAX_ERROR_BODY = 1024 * 1024
_RECV_SIZE = 256 * 1024
_QUOTE_SAFE = "/%:@!$&'()*+,;=-._~"

Origin = tuple[str, str, int]


class _ConnectionLost(Exception):
    """The connection failed under a request; ``blame`` says whether the request is at fault."""

    def __init__(self, why: str, *, blame: bool = True) -> None:
        super().__init__(why)
        self.why = why
        self.blame = blame


@dataclass(eq=False)
class _Connection:
    """One socket, the parser of its byte stream, events parsed but not consumed, its rate guard."""

    sock: socket.socket
    guard: LowSpeedGuard
    parser: ResponseParser = field(default_factory=ResponseParser)
    events: deque[Event] = field(default_factory=deque)
    #: The connection's receive buffer, reused for every read (see :meth:`PipelinedHttpFetcher._recv`).
    buf: memoryview = field(default_factory=lambda: memoryview(bytearray(_RECV_SIZE)))


def _split(url: str) -> tuple[Origin, bytes, str]:
    """Origin, request target and Host header of ``url``.

    A pull asks for thousands of URLs that differ only in their last segment, so the directory
    part is parsed once (cached) and only a leaf of plain characters is appended to it.
    """
    head, sep, leaf = url.rpartition("/")
    if sep and _PLAIN_LEAF.fullmatch(leaf) and "?" not in head and "#" not in head and "//" in head:
        origin, target, host_header = _split_dir(head + "/")
        return origin, target + leaf.encode("ascii"), host_header
    return _split_url(url)


#: A last URL segment that needs no quoting (object names: hex, ``.``, an extension).
_PLAIN_LEAF = re.compile(r"[A-Za-z0-9._-]+")


@functools.lru_cache(maxsize=2048)
def _split_dir(url: str) -> tuple[Origin, bytes, str]:
    return _split_url(url)


def _split_url(url: str) -> tuple[Origin, bytes, str]:
    """Parse a URL (the configured one, or a server's redirect target).

    Raises:
        FetchError: for anything but an http(s) URL with an ASCII host and a valid port.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        hostname = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as e:  # a bad port or IPv6 literal (urllib raises ValueError for both)
        raise FetchError(url, f"invalid URL: {e}") from e
    if scheme not in ("http", "https") or not hostname:
        raise FetchError(url, "not an http(s) URL")
    host_header = parts.netloc.rpartition("@")[2]
    if not host_header.isascii() or not host_header.isprintable() or " " in host_header:
        raise FetchError(url, "the host name is not plain ASCII")
    # Quote the query too: a redirect's bytes must never break the request line or add headers.
    path = urllib.parse.quote(parts.path or "/", safe=_QUOTE_SAFE)
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe=_QUOTE_SAFE + "?")
    return (scheme, hostname, port), path.encode("ascii"), host_header


def _auth_header(url: str) -> bytes:
    """``Authorization: Basic`` for ``http://user:password@host/`` URLs (as ostree sends it)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return b""
    import base64

    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode())
    return b"Authorization: Basic " + token + b"\r\n"


@dataclass(eq=False)
class _OriginPool:
    """Requests waiting for one server, and the connection threads serving them."""

    origin: Origin
    host_header: str
    #: Extra request header lines (``Authorization`` from credentials in the URL, configured headers).
    extra_headers: bytes = b""
    queue: deque[Request] = field(default_factory=deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    threads: list[threading.Thread] = field(default_factory=list)
    sockets: set[socket.socket] = field(default_factory=set)
    #: Cleared when the server speaks HTTP/1.0: one request per connection then.
    pipelining: bool = True
    _tail: bytes = b""

    def request_tail(self, user_agent: str) -> bytes:
        """Everything of a request after its target (the same for every request to this server)."""
        if not self._tail:
            self._tail = (
                b" HTTP/1.1\r\nHost: "
                + self.host_header.encode("idna")
                + b"\r\nUser-Agent: "
                + user_agent.encode("ascii")
                + b"\r\n"
                + self.extra_headers
                + b"Accept-Encoding: identity\r\n\r\n"
            )
        return self._tail

    def put(self, req: Request, *, front: bool = False) -> None:
        with self.cond:
            if front:
                self.queue.appendleft(req)
            else:
                self.queue.append(req)
            self.cond.notify()

    def get(self, timeout: float) -> Request | None:
        with self.cond:
            if not self.queue:
                self.cond.wait(timeout)
            return self.queue.popleft() if self.queue else None

    def get_nowait(self) -> Request | None:
        with self.cond:
            return self.queue.popleft() if self.queue else None


class PipelinedHttpFetcher(FetcherBase):
    """HTTP(S) fetcher with a few keep-alive connections per server, each pipelining requests.

    Thread-safe. Background threads are started per server on first use and stopped by
    :meth:`close` (also on garbage collection of the process: they are daemons). Retries,
    status classification and the size limit are the :class:`~bootree.transport.base.FetcherBase`
    ones; this class only moves bytes between sockets and :class:`~bootree.transport.http1.ResponseParser`.
    """

    def __init__(self, config: FetchConfig | None = None) -> None:
        super().__init__(config)
        self._pools: dict[Origin, _OriginPool] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        cfg = self.config
        # Sockets wake up at least this often, so the minimum-rate guard also sees silence.
        self._tick = cfg.read_timeout
        if cfg.low_speed_limit > 0 and cfg.low_speed_time > 0:
            self._tick = max(0.05, min(self._tick, cfg.low_speed_time / 8))

    def close(self) -> None:
        """Stop the connection threads and close their sockets."""
        super().close()
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            with pool.cond:
                pool.cond.notify_all()
                socks = list(pool.sockets)
            for s in socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for pool in pools:
            for t in pool.threads:
                t.join(timeout=5)

    def __enter__(self) -> PipelinedHttpFetcher:
        return self

    # --- queueing -------------------------------------------------------------------------------

    def _start(self, req: Request) -> None:
        try:
            origin, _, host_header = _split(req.url)
        except (FetchError, ValueError, UnicodeError) as e:
            err = e if isinstance(e, FetchError) else FetchError(req.url, f"bad URL: {e}")
            self._complete(req, None, err)
            return
        with self._lock:
            pool = self._pools.get(origin)
            if pool is None:
                extra = _auth_header(req.url) + b"".join(
                    f"{k}: {v}\r\n".encode("latin-1") for k, v in self.config.headers
                )
                pool = self._pools[origin] = _OriginPool(origin, host_header, extra)
                for i in range(max(1, self.config.connections)):
                    t = threading.Thread(
                        target=self._serve, args=(pool,), name=f"bootree-http-{origin[1]}-{i}", daemon=True
                    )
                    pool.threads.append(t)
                    t.start()
        pool.put(req, front=req.attempts > 0)  # a retry goes first: it has waited already

    # --- connection threads ---------------------------------------------------------------------

    def _connect(self, pool: _OriginPool) -> _Connection:
        scheme, host, port = pool.origin
        try:
            sock = socket.create_connection((host, port), timeout=self.config.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._ssl_context().wrap_socket(sock, server_hostname=host)
                sock.settimeout(self._tick)
            else:
                _kernel_timeouts(sock, self._tick)
        except (OSError, ssl.SSLError) as e:
            raise _ConnectionLost(f"cannot connect to {host}:{port}: {_describe(e)}") from e
        with pool.cond:
            pool.sockets.add(sock)
        return _Connection(sock, self._guard())

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.config.tls_ca_path)
            if not self.config.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx
        return self._ssl

    def _drop(self, pool: _OriginPool, conn: _Connection | None) -> None:
        if conn is None:
            return
        with pool.cond:
            pool.sockets.discard(conn.sock)
        try:
            conn.sock.close()
        except OSError:
            pass

    def _request_bytes(self, pool: _OriginPool, req: Request) -> bytes:
        _, target, _ = _split(req.url)
        tail = pool.request_tail(self.config.user_agent)
        if req.resume:  # the rest of a body an interrupted attempt received part of
            extra = f"Range: bytes={len(req.resume)}-\r\n"
            if req.validator and req.validator.isprintable() and req.validator.isascii():
                extra += f"If-Range: {req.validator}\r\n"
            tail = tail[:-2] + extra.encode("ascii") + b"\r\n"
        return b"GET " + target + tail

    def _serve(self, pool: _OriginPool) -> None:
        """One connection's loop: keep up to ``pipeline_depth`` requests in flight, in order."""
        conn: _Connection | None = None
        inflight: deque[Request] = deque()
        sent = 0  # how many of inflight were written on the current connection
        served = 0  # responses read on the current connection
        while not self._closed.is_set():
            if not inflight:
                req = pool.get(0.25)
                if req is None:
                    continue
                inflight.append(req)
            depth = self.config.pipeline_depth if pool.pipelining else 1
            while len(inflight) < depth:
                more = pool.get_nowait()
                if more is None:
                    break
                inflight.append(more)
            head = inflight[0]
            try:
                if conn is None:
                    conn = self._connect(pool)
                    sent = served = 0
                if sent < len(inflight):
                    payload = b"".join(self._request_bytes(pool, r) for r in list(inflight)[sent:])
                    if sent == 0:
                        conn.guard.reset()  # the connection was idle: the rate counts from now
                    try:
                        conn.sock.sendall(payload)
                    except OSError as e:
                        raise _ConnectionLost(f"send failed: {_describe(e)}", blame=served == 0) from e
                    self._count_request(len(inflight) - sent)
                    sent = len(inflight)
                resp = self._read_response(pool, conn, head, fresh=served == 0)
            except _ConnectionLost as lost:
                self._drop(pool, conn)
                conn = None
                if lost.blame:
                    inflight.popleft()
                    self._fail(head, FetchError(head.url, lost.why, transient=True))
                continue
            except FetchError as e:  # a verdict on the head request; the connection is unusable
                self._drop(pool, conn)
                conn = None
                inflight.popleft()
                self._fail(head, e)
                continue
            except Exception as e:  # a bug must not kill the thread and leave requests unanswered
                log.exception("unexpected error reading %s", head.url)
                self._drop(pool, conn)
                conn = None
                inflight.popleft()
                self._complete(head, None, FetchError(head.url, f"internal error: {e!r}"))
                continue
            inflight.popleft()
            sent -= 1
            served += 1
            status, headers, body, stream, close = resp
            self._finish(head, status, headers, body, stream)
            if close:
                self._drop(pool, conn)
                conn = None
        self._drop(pool, conn)
        for req in inflight:
            self._complete(req, None, FetchError(req.url, "fetcher is closed"))

    # --- response reading -----------------------------------------------------------------------

    def _recv(self, conn: _Connection) -> memoryview:
        """The next bytes from the socket (empty at EOF), enforcing the stall and rate limits.

        They are read into the connection's one buffer, valid until the next read: the parser's
        body events may be views of it, and are all consumed before the next read (see
        :meth:`_read_into`). ``sock.recv`` would allocate a fresh 256 KiB object per read, which
        glibc serves with its own ``mmap``/``mremap``/``munmap`` and a page fault per 4 KiB
        received (measured: 3 syscalls per read and 38,000 faults of zeroed pages per pull).
        """
        since = time.monotonic()
        while True:
            try:
                n = conn.sock.recv_into(conn.buf)
            except (TimeoutError, BlockingIOError):  # the timeout of settimeout or SO_RCVTIMEO
                slow = conn.guard.tick(0)
                if slow is not None:
                    raise _ConnectionLost(slow) from None
                if time.monotonic() - since >= self.config.read_timeout:
                    raise _ConnectionLost(
                        f"server stalled (no data for {self.config.read_timeout:g} s)"
                    ) from None
                continue
            except (OSError, ssl.SSLError) as e:
                if self._closed.is_set():
                    raise _ConnectionLost("fetcher is closed", blame=False) from e
                raise _ConnectionLost(f"connection failed: {_describe(e)}") from e
            slow = conn.guard.tick(n)
            if slow is not None:
                raise _ConnectionLost(slow)
            return conn.buf[:n]

    def _read_response(
        self, pool: _OriginPool, conn: _Connection, req: Request, *, fresh: bool
    ) -> tuple[int, dict[str, str], bytes, BodyStream | None, bool]:
        """Status, headers, body (of a 200), its stream and whether to close, of the next response."""
        sink = BodySink(req.url, req.max_length, stream=req.stream)
        try:
            return self._read_into(pool, conn, sink, req, fresh=fresh)
        except BaseException:
            # Keep what an in-memory body got so far: the retry asks for the rest (Range).
            got = sink.partial()
            if len(got) > len(req.resume):
                req.resume, req.validator = got, sink.validator
            sink.abort()
            raise

    def _read_into(
        self, pool: _OriginPool, conn: _Connection, sink: BodySink, req: Request, *, fresh: bool
    ) -> tuple[int, dict[str, str], bytes, BodyStream | None, bool]:
        head: Head | None = None
        error_body = 0
        while True:
            while conn.events:
                ev = conn.events.popleft()
                if isinstance(ev, Head):
                    if ev.http10 and pool.pipelining:
                        # A 1.0 server answers one request per connection: stop sending ahead.
                        log.debug("%s speaks HTTP/1.0: pipelining off", pool.origin[1])
                        pool.pipelining = False
                    if ev.status == 206 and req.resume:
                        ev = _resumed(ev, req, sink)
                    elif ev.status == 200:
                        req.resume = b""  # a whole body (the server ignored Range, or no resume)
                    head = ev
                    if ev.status == 200:
                        sink.validator = ev.headers.get("etag") or ev.headers.get("last-modified") or ""
                        sink.start(ev.length)
                    elif ev.length is not None and ev.length > _MAX_ERROR_BODY:
                        # The body of an error is not needed: do not read it, drop the connection.
                        return ev.status, ev.headers, b"", None, True
                elif isinstance(ev, Body):
                    assert head is not None
                    if head.status == 200:
                        sink.add(ev.data)
                    else:
                        error_body += len(ev.data)
                        if error_body > _MAX_ERROR_BODY:
                            return head.status, head.headers, b"", None, True
                else:
                    assert head is not None
                    body = sink.finish() if head.status == 200 else b""
                    self._count_bytes(sink.received - sink.preloaded)
                    req.resume = b""
                    return head.status, head.headers, body, sink.stream, head.close
            data = self._recv(conn)
            try:
                if data:
                    conn.events.extend(conn.parser.feed(data))
                    continue
                idle = conn.parser.idle
                conn.events.extend(conn.parser.feed_eof())
            except ProtocolError as e:
                raise _ConnectionLost(f"malformed HTTP response: {e}") from e
            if not conn.events:
                if idle and head is None:
                    # A reused connection closed by the server (idle timeout, request limit) is
                    # not the request's fault; a fresh one that closes at once is.
                    raise _ConnectionLost("server closed the connection", blame=fresh)
                raise _ConnectionLost("connection closed in the response")


def _resumed(head: Head, req: Request, sink: BodySink) -> Head:
    """A ``206`` answering a resumed request, as the ``200`` of the whole body it completes.

    Raises:
        FetchError: transient, for a range that does not continue what was received (the
            retry then starts over).
    """
    done = len(req.resume)
    raw = head.headers.get("content-range", "")
    unit, _, spec = raw.partition(" ")
    span, _, total_s = spec.partition("/")
    first, _, last = span.partition("-")
    if not (unit == "bytes" and first.isdigit() and last.isdigit() and total_s.isdigit()) or int(first) != done:
        req.resume = b""
        raise FetchError(req.url, f"unusable partial response (Content-Range {raw[:80]!r})", transient=True)
    total = int(total_s)
    if int(last) != total - 1 or (head.length is not None and head.length != total - done):
        req.resume = b""
        raise FetchError(req.url, f"unusable partial response (Content-Range {raw[:80]!r})", transient=True)
    sink.validator = req.validator
    sink.preload(req.resume)
    return Head(200, head.headers, head.http10, head.close, total)


def _kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Make ``sock`` blocking with the kernel's receive and send timeouts instead of Python's.

    With ``settimeout`` every ``recv``/``send`` first waits in ``poll()``: a second system call,
    and a second release of the GIL, for each read and each batch of requests (about 6,000 of
    each per pull of the corpus). ``SO_RCVTIMEO`` gives the same stall detection from the read
    itself, which then fails with ``EAGAIN`` (:class:`BlockingIOError`). TLS sockets keep
    ``settimeout``: the ``ssl`` module expects it.
    """
    import struct

    whole = int(seconds)
    tv = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _describe(e: BaseException) -> str:
    if isinstance(e, (TimeoutError, BlockingIOError)):
        return "timed out"
    return str(e) or type(e).__name__
