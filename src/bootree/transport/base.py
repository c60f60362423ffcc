"""The one fetcher base: what every fetcher shares, written once (python-tuf's FetcherInterface).

Layer: transport. An implementation writes only how to make *one attempt* at one URL; this
module owns everything around it, so that the HTTP client, httpx, ``file://`` and the in-memory
fetcher cannot disagree:

* **status classification** (:func:`classify`): 200 is a body, 404/410 are
  :class:`~bootree.errors.NotFoundError`, 301/302/303/307/308 redirect, 408/429/5xx are
  transient, anything else is final;
* **retries with backoff** (:meth:`FetcherBase._retry`), for transient faults only, up to
  ``max_attempts`` per request, on a timer so no thread sleeps;
* **the size limit and the minimum transfer rate** (:class:`BodySink`, :class:`LowSpeedGuard`):
  an announced length over ``max_length`` fails before a byte of the body is read, a body that
  grows past it fails as soon as it does, a short body is a (transient) truncation, and a
  transfer slower than ``low_speed_limit`` bytes/s over ``low_speed_time`` seconds fails;
* **error conversion** (:func:`convert_error`): ``OSError``, timeouts and ``ValueError`` become
  :class:`~bootree.errors.FetchError`; an implementation converts only its own library's
  exceptions;
* the ``submit``/``wait`` bookkeeping and the counters.

Two kinds of implementation: :class:`SyncFetcher` subclasses write ``_fetch_once`` (a blocking
GET that feeds a :class:`BodySink`) and choose whether attempts run inline (local reads) or on a
thread pool (httpx); :mod:`bootree.transport.http` subclasses :class:`FetcherBase` directly,
because its connection threads run many attempts at once, and reports each attempt's outcome with
:meth:`FetcherBase._finish` / :meth:`FetcherBase._fail`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import Enum

from bootree.errors import FetchError, NotFoundError
from bootree.transport import BodyStream, Completion, CompletionQueue, FetchConfig, FetchStats, StreamFactory

__all__ = [
    "BodySink",
    "FetcherBase",
    "LowSpeedGuard",
    "Request",
    "StatusClass",
    "SyncFetcher",
    "classify",
    "convert_error",
    "redirect_target",
]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


class StatusClass(Enum):
    """What a response status means for the request."""

    OK = "ok"
    NOT_FOUND = "not-found"
    REDIRECT = "redirect"
    TRANSIENT = "transient"
    FINAL = "final"


def classify(status: int) -> StatusClass:
    """The one mapping of HTTP status codes to outcomes (see the module docstring)."""
    if status == 200:
        return StatusClass.OK
    if status in (404, 410):
        return StatusClass.NOT_FOUND
    if status in _REDIRECT_STATUS:
        return StatusClass.REDIRECT
    if status in _TRANSIENT_STATUS:
        return StatusClass.TRANSIENT
    return StatusClass.FINAL


def convert_error(url: str, exc: BaseException) -> FetchError:
    """A :class:`FetchError` for an OS, timeout or parsing error met while fetching ``url``.

    Timeouts and connection-level ``OSError`` are transient (a retry may succeed); a
    ``ValueError`` (malformed response) is transient too, since a proxy or an overloaded server
    can garble one response.
    """
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, TimeoutError):
        return FetchError(url, "timed out", transient=True)
    if isinstance(exc, OSError):
        return FetchError(url, f"connection failed: {exc.strerror or exc}", transient=True)
    if isinstance(exc, ValueError):
        return FetchError(url, f"malformed response: {exc}", transient=True)
    return FetchError(url, str(exc) or type(exc).__name__)


def redirect_target(base: str, location: str) -> str:
    """The URL a ``Location`` header names, resolved against the request's URL.

    Raises:
        FetchError: for a target ``urllib`` cannot parse (a bad port, an IPv6 literal that does
            not close); an unusable scheme or host is refused when the request starts.
    """
    import urllib.parse

    try:
        target = urllib.parse.urljoin(base, location)
        urllib.parse.urlsplit(target).port  # noqa: B018  (parsing the port is the check)
    except ValueError as e:
        raise FetchError(base, f"bad redirect target {location[:80]!r}: {e}") from e
    return target


class LowSpeedGuard:
    """libcurl's low-speed limit: fail when fewer than ``limit`` bytes/s arrive over ``window`` s.

    A read timeout alone counts only silence between reads, so a server sending one byte every
    few seconds holds a request forever. The guard keeps a few samples of (time, bytes received)
    and, once a whole window has passed, compares what arrived in the last window with
    ``limit * window``. ``limit <= 0`` or ``window <= 0`` disables it. Call :meth:`tick` after
    every read, including reads that timed out with nothing (``nbytes=0``).
    """

    __slots__ = ("_samples", "_total", "limit", "window")

    def __init__(self, limit: float, window: float, now: float | None = None) -> None:
        self.limit = limit
        self.window = window
        self._total = 0
        t = time.monotonic() if now is None else now
        self._samples: deque[tuple[float, int]] = deque([(t, 0)])

    @property
    def enabled(self) -> bool:
        """Whether a limit is set."""
        return self.limit > 0 and self.window > 0

    def reset(self, now: float | None = None) -> None:
        """Start a new measurement (the connection went idle, or a new attempt begins)."""
        self._samples.clear()
        self._samples.append((time.monotonic() if now is None else now, self._total))

    def tick(self, nbytes: int, now: float | None = None) -> str | None:
        """Count ``nbytes`` received; a reason string if the transfer is now too slow."""
        self._total += nbytes
        if not self.enabled:
            return None
        t = time.monotonic() if now is None else now
        samples = self._samples
        if t - samples[-1][0] >= self.window / 8:
            samples.append((t, self._total))
        # Keep exactly one sample at or before the window's start.
        while len(samples) > 1 and samples[1][0] <= t - self.window:
            samples.popleft()
        t0, n0 = samples[0]
        if t - t0 < self.window:
            return None
        got = self._total - n0
        if got < self.limit * (t - t0):
            return (
                f"transfer too slow: {got} bytes in {t - t0:.0f} s "
                f"(minimum {self.limit:g} bytes/s over {self.window:g} s)"
            )
        return None


class BodySink:
    """Collects one response body, enforcing the size bound and the announced length.

    An implementation calls :meth:`start` with the ``Content-Length`` (or None), :meth:`add` for
    every piece and :meth:`finish` at the end; each raises :class:`FetchError` the moment the
    body breaks a rule, so a hostile server never gets more than ``max_length`` bytes into memory.
    """

    __slots__ = ("_declared", "_factory", "_parts", "_total", "guard", "max_length", "preloaded", "stream", "url",
                 "validator")

    def __init__(
        self,
        url: str,
        max_length: int,
        guard: LowSpeedGuard | None = None,
        stream: StreamFactory | None = None,
    ) -> None:
        self.url = url
        self.max_length = max_length
        self.guard = guard
        self._factory = stream
        #: Where the body goes instead of memory, if the request's factory took it.
        self.stream: BodyStream | None = None
        self._parts: list[bytes] = []
        self._total = 0
        self._declared: int | None = None
        #: Bytes of the body that an earlier attempt received (a resumed download).
        self.preloaded = 0
        #: The response's ``ETag`` or ``Last-Modified``, for ``If-Range`` when resuming.
        self.validator = ""

    @property
    def received(self) -> int:
        """Body bytes so far (including any preloaded)."""
        return self._total

    def preload(self, prefix: bytes) -> None:
        """Begin with ``prefix``, the part of the body an interrupted attempt received (the
        rest comes as a ``206`` to ``Range: bytes=N-``). Only for bodies held in memory."""
        assert self._total == 0 and self.stream is None
        if prefix:
            self._parts.append(prefix)
            self._total = self.preloaded = len(prefix)

    def partial(self) -> bytes:
        """What an interrupted in-memory body received so far (b"" for a streamed body)."""
        if self.stream is not None:
            return b""
        return b"".join(self._parts)

    def start(self, declared: int | None) -> None:
        """The body announces ``declared`` bytes (None: unknown).

        Raises:
            FetchError: final, if over ``max_length``.
        """
        if declared is not None and declared > self.max_length:
            raise FetchError(self.url, f"too large: {declared} bytes exceeded maximum size {self.max_length}", status=200)
        self._declared = declared
        if self._factory is not None and not self.preloaded:  # a resumed body stays in memory
            self.stream = self._factory(declared)

    def add(self, chunk: bytes | memoryview) -> None:
        """Append a piece of the body (a view is copied if kept: its buffer is reused).

        Raises:
            FetchError: final if the body passes ``max_length``; transient if too slow.
        """
        self._total += len(chunk)
        if self._total > self.max_length:
            raise FetchError(self.url, f"too large: exceeded maximum size {self.max_length}", status=200)
        if self._declared is not None and self._total > self._declared:
            raise FetchError(self.url, "response longer than its content-length", transient=True)
        if self.stream is not None:
            self.stream.write(chunk)
        else:
            self._parts.append(bytes(chunk))
        if self.guard is not None:
            slow = self.guard.tick(len(chunk))
            if slow is not None:
                raise FetchError(self.url, slow, transient=True)

    def finish(self) -> bytes:
        """The whole body.

        Raises:
            FetchError: transient, if fewer bytes than announced arrived.
        """
        if self._declared is not None and self._total != self._declared:
            raise FetchError(
                self.url, f"Download incomplete: got {self._total} of {self._declared} bytes", transient=True
            )
        parts = self._parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._parts = []
        return bytes(data)

    def abort(self) -> None:
        """The attempt failed: drop the body (and tell its stream)."""
        self._parts = []
        if self.stream is not None:
            self.stream.abort()
            self.stream = None


@dataclass(slots=True, eq=False)
class Request:
    """One requested URL across its attempts and redirects."""

    url: str
    max_length: int
    key: Hashable
    sink: queue.SimpleQueue[Completion]
    attempts: int = 0
    redirects: int = 0
    stream: StreamFactory | None = None
    #: The start of the body received by an interrupted attempt: the next asks for the rest
    #: (``Range``), so a server that cuts transfers short still gets the whole file across
    #: attempts. What is assembled is verified by the caller like any body.
    resume: bytes = b""
    #: ``ETag`` or ``Last-Modified`` of the response ``resume`` came from (``If-Range``: a
    #: changed file is sent whole instead of spliced).
    validator: str = ""


class FetcherBase(ABC):
    """Retries, classification, bookkeeping; subclasses implement :meth:`_start` (one attempt).

    Implements the :class:`~bootree.transport.Fetcher` protocol. Thread-safe: completions may be
    reported from any thread.
    """

    def __init__(self, config: FetchConfig | None = None) -> None:
        self.config = config or FetchConfig()
        self._done = CompletionQueue()
        self._stats = FetchStats()
        self._stats_lock = threading.Lock()
        self._closed = threading.Event()

    # --- the Fetcher protocol -------------------------------------------------------------------

    @property
    def stats(self) -> FetchStats:
        """Requests sent (including retries), body bytes received, retries."""
        return self._stats

    @property
    def pending(self) -> int:
        """Submitted requests not yet returned by :meth:`wait`."""
        return self._done.pending

    def fetch(self, url: str, *, max_length: int) -> bytes:
        """Download ``url`` (retrying transient faults); see :meth:`bootree.transport.Fetcher.fetch`."""
        sink: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._begin(Request(url, max_length, url, sink))
        done = sink.get()
        if done.error is not None:
            raise done.error
        assert done.data is not None
        return done.data

    def submit(
        self, url: str, *, max_length: int, key: Hashable, stream: StreamFactory | None = None
    ) -> None:
        """Queue ``url``; its completion comes back from :meth:`wait`."""
        self._done.submitted()
        self._begin(Request(url, max_length, key, self._done.results, stream=stream))

    def wait(self, timeout: float | None = None) -> Completion:
        """Next finished submitted request, in completion order."""
        return self._done.wait(timeout)

    def close(self) -> None:
        """Stop retries and background work (subclasses release their resources too)."""
        self._closed.set()

    def __enter__(self) -> FetcherBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- for implementations --------------------------------------------------------------------

    @abstractmethod
    def _start(self, req: Request) -> None:
        """Make one attempt at ``req.url``; report it with :meth:`_finish` or :meth:`_fail`."""

    def _begin(self, req: Request) -> None:
        if self._closed.is_set():
            self._complete(req, None, FetchError(req.url, "fetcher is closed"))
            return
        self._start(req)

    def _count_request(self, n: int = 1) -> None:
        with self._stats_lock:
            self._stats.requests += n

    def _count_bytes(self, n: int) -> None:
        with self._stats_lock:
            self._stats.bytes += n

    def _complete(
        self, req: Request, data: bytes | None, error: FetchError | None, stream: BodyStream | None = None
    ) -> None:
        req.sink.put(Completion(req.key, req.url, data, error, stream))

    def _finish(
        self,
        req: Request,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        stream: BodyStream | None = None,
    ) -> None:
        """Report an attempt that got a response (``body``: of a 200, else ignored).

        ``stream``: the stream a 200's body went to instead of ``body``.
        """
        kind = classify(status)
        if kind is StatusClass.OK:
            enc = headers.get("content-encoding", "identity").lower()
            if enc not in ("identity", ""):
                if stream is not None:
                    stream.abort()
                self._complete(req, None, FetchError(req.url, f"unexpected content-encoding {enc!r}", status=200))
            else:
                self._complete(req, body, None, stream)
        elif kind is StatusClass.NOT_FOUND:
            self._complete(req, None, NotFoundError(req.url))
        elif kind is StatusClass.REDIRECT and "location" in headers:
            if req.redirects >= MAX_REDIRECTS:
                self._complete(req, None, FetchError(req.url, "too many redirects", status=status))
                return
            try:
                target = redirect_target(req.url, headers["location"])
            except FetchError as e:  # the server's choice: it ends the request, not the thread
                self._complete(req, None, e)
                return
            self._begin(
                Request(target, req.max_length, req.key, req.sink, req.attempts, req.redirects + 1, req.stream)
            )
        elif kind is StatusClass.TRANSIENT:
            self._retry(req, FetchError(req.url, f"server error (HTTP {status})", status=status, transient=True))
        else:
            self._complete(req, None, FetchError(req.url, f"HTTP status {status}", status=status))

    def _fail(self, req: Request, error: BaseException) -> None:
        """Report an attempt that failed without a usable response."""
        err = convert_error(req.url, error)
        if err.transient:
            self._retry(req, err)
        else:
            self._complete(req, None, err)

    def _retry(self, req: Request, err: FetchError) -> None:
        """Count a failed attempt; start another after a backoff, or fail the request for good."""
        req.attempts += 1
        if req.attempts >= self.config.max_attempts or self._closed.is_set():
            self._complete(req, None, err)
            return
        with self._stats_lock:
            self._stats.retries += 1
        delay = self.config.backoff(req.attempts)
        log.info("retrying %s in %.1fs: %s", req.url, delay, err.why)
        timer = threading.Timer(delay, self._begin, (req,))
        timer.daemon = True
        timer.start()

    def _guard(self) -> LowSpeedGuard:
        """A fresh minimum-rate guard with this fetcher's settings."""
        return LowSpeedGuard(self.config.low_speed_limit, self.config.low_speed_time)


#: Signature of :meth:`SyncFetcher._fetch_once`: returns status and headers, feeds the body.
FetchOnce = Callable[[str, BodySink], tuple[int, Mapping[str, str]]]


class SyncFetcher(FetcherBase):
    """A fetcher whose single attempt is a blocking call: implement :meth:`_fetch_once` only.

    ``threads=0`` runs attempts inline in :meth:`submit` (local reads are cheaper than a thread
    hand-off); otherwise they run on a pool of that many threads.
    """

    def __init__(self, config: FetchConfig | None = None, *, threads: int = 0) -> None:
        super().__init__(config)
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=f"bootree-{type(self).__name__}")
            if threads > 0
            else None
        )

    @abstractmethod
    def _fetch_once(self, url: str, body: BodySink) -> tuple[int, Mapping[str, str]]:
        """One GET of ``url``: the status and headers; a 200's body goes to ``body``.

        Raises:
            FetchError: for a fault (``transient=True`` if a retry may succeed).
            OSError, TimeoutError, ValueError: converted by the base.
        """

    def _start(self, req: Request) -> None:
        if self._pool is None:
            self._attempt(req)
            return
        try:
            self._pool.submit(self._attempt, req)
        except RuntimeError:  # pool shut down by close()
            self._complete(req, None, FetchError(req.url, "fetcher is closed"))

    def _attempt(self, req: Request) -> None:
        self._count_request()
        body = BodySink(req.url, req.max_length, self._guard(), req.stream)
        try:
            status, headers = self._fetch_once(req.url, body)
            data = body.finish() if status == 200 else b""
        except Exception as e:  # normalised at the seam: nothing else may escape an attempt
            body.abort()
            self._fail(req, e)
            return
        if status != 200 and body.stream is not None:
            body.abort()
        self._count_bytes(body.received if status == 200 else 0)
        self._finish(req, status, headers, data, body.stream)

    def close(self) -> None:
        """Stop retries; cancel queued attempts."""
        super().close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
