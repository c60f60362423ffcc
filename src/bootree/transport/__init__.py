"""Fetch bytes by URL: the network seam of bootree.

Layer: transport. Knows nothing about ostree (no objects, no repositories) and imports nothing
from bootree but :mod:`bootree.errors`. Every third-party or OS error is turned into
:class:`~bootree.errors.FetchError` (or :class:`~bootree.errors.NotFoundError`) here, at the seam,
so callers never see a socket, ``ssl`` or ``httpx`` exception.

Two ways to fetch, both bounded by a caller-given ``max_length``:

* :meth:`Fetcher.fetch` — one URL, blocking; used for small control files (summary, config).
* :meth:`Fetcher.submit` + :meth:`Fetcher.wait` — many requests in flight at once; completions
  come back in any order. A puller keeps the pipe full while it verifies what arrived, which is
  what makes a pull of thousands of small objects fast.

Every implementation derives from :class:`bootree.transport.base.FetcherBase`, which owns status
classification, retries with backoff, the size limit, the minimum transfer rate and error
conversion; an implementation writes one attempt. They are
:class:`~bootree.transport.http.PipelinedHttpFetcher` (default for ``http`` and ``https``: a
small HTTP/1.1 client with keep-alive and request pipelining over the pure parser of
:mod:`bootree.transport.http1`), :class:`~bootree.transport.httpx_fetcher.HttpxFetcher` (httpx,
used for proxies and when asked for), :class:`~bootree.transport.file.FileFetcher`
(``file://``) and :class:`~bootree.transport.memory.MemoryFetcher` (a dict of URLs, with
injectable faults, for tests and simulators). One contract suite
(``tests/unit/transport/test_fetcher_contract.py``) runs against all four.
"""

from __future__ import annotations

import os
import queue
import urllib.parse
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bootree.errors import FetchError, NotFoundError

__all__ = [
    "BodyStream",
    "Completion",
    "FetchConfig",
    "FetchError",
    "Fetcher",
    "NotFoundError",
    "StreamFactory",
    "join_url",
    "open_fetcher",
]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """Network knobs shared by every fetcher; defaults are safe for a fleet of devices.

    Why each exists: ``connect_timeout`` and ``read_timeout`` bound how long a dead or stalled
    server can hold a pull (a stall is a read that yields no byte for ``read_timeout``);
    ``low_speed_limit`` over ``low_speed_time`` bounds a server that trickles bytes (with the
    defaults, 5 attempts fail within about three minutes);
    ``max_attempts`` and the backoff ride out transient faults (5xx, resets, truncated bodies)
    without hammering a struggling server; ``connections`` x ``pipeline_depth`` is the number of
    requests in flight.
    """

    #: Seconds to establish a TCP (and TLS) connection.
    connect_timeout: float = 15.0
    #: Seconds without receiving a single byte before a request counts as stalled.
    read_timeout: float = 30.0
    #: Minimum transfer rate (libcurl's low-speed limit, ostree's ``low-speed-limit-bytes``):
    #: a transfer that receives fewer than this many bytes per second over ``low_speed_time``
    #: seconds fails (transiently, so it is retried). 0 disables the check.
    low_speed_limit: float = 1000.0
    #: The window of ``low_speed_limit`` in seconds (ostree's ``low-speed-time-seconds``).
    low_speed_time: float = 30.0
    #: Attempts per request for transient failures (1 = no retry).
    max_attempts: int = 5
    #: First backoff delay in seconds; doubled per attempt, with jitter, up to ``backoff_max``.
    backoff_base: float = 0.2
    backoff_max: float = 10.0
    #: Parallel connections per server.
    connections: int = 2
    #: Requests sent ahead on one keep-alive connection (HTTP/1.1 pipelining; 1 disables it).
    pipeline_depth: int = 32
    #: Verify TLS certificates (ostree's ``tls-permissive=true`` turns this off).
    tls_verify: bool = True
    #: Extra CA bundle (ostree's ``tls-ca-path``).
    tls_ca_path: str | None = None
    #: HTTP proxy URL (ostree's ``proxy``); forces the httpx backend.
    proxy: str | None = None
    #: ``"auto"`` (pipelined client unless a proxy is set), ``"pipelined"`` or ``"httpx"``.
    backend: str = "auto"
    user_agent: str = "bootree/0.1"
    #: Extra request headers (ostree's ``--http-header``, and the remote's cookies as ``Cookie``).
    headers: tuple[tuple[str, str], ...] = ()

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): exponential with full jitter."""
        import random

        cap = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return float(cap / 2 + random.uniform(0, cap / 2))


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished request of :meth:`Fetcher.submit`: either ``data`` or ``error`` is set.

    When the body went to a :class:`BodyStream` (see :meth:`Fetcher.submit`), ``data`` is
    ``b""`` and ``stream`` is the stream that received it.
    """

    key: Hashable
    url: str
    data: bytes | None
    error: FetchError | None
    stream: BodyStream | None = None


class BodyStream(Protocol):
    """Where a large body goes instead of memory (a file being written, for a pull).

    Made per attempt by the :data:`StreamFactory` given to :meth:`Fetcher.submit`, once the
    announced length is known. :meth:`write` must not raise: a consumer records its own failure
    (a full disk, bytes that do not verify) and reports it to its owner after the completion;
    the fetcher only moves bytes. A failed attempt calls :meth:`abort` before a retry makes a
    new stream.
    """

    def write(self, chunk: bytes | memoryview) -> None:
        """Take the next piece of the body (a view is valid only during the call: copy to keep)."""
        ...

    def abort(self) -> None:
        """Discard what was written (the attempt failed)."""
        ...


#: Given the announced body length (None: unknown), a stream to receive the body, or None to
#: receive it in memory as usual.
StreamFactory = Callable[[int | None], BodyStream | None]


class CompletionQueue:
    """Requests submitted and not yet collected, and their completions in finishing order.

    The ``pending``/``wait`` half of :class:`Fetcher`, shared by the threaded fetchers: their
    worker threads ``put`` into :attr:`results`; the caller counts with :meth:`submitted`.
    """

    def __init__(self) -> None:
        self.results: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self.pending = 0

    def submitted(self) -> None:
        """Count one more request whose completion will arrive in :attr:`results`."""
        self.pending += 1

    def wait(self, timeout: float | None = None) -> Completion:
        """Next completion; :class:`FetchError` if none is pending or none comes in ``timeout``."""
        if self.pending <= 0:
            raise FetchError("", "no request pending")
        try:
            done = self.results.get(timeout=timeout)
        except queue.Empty:
            raise FetchError("", f"no response within {timeout} s", transient=True) from None
        self.pending -= 1
        return done


@runtime_checkable
class Fetcher(Protocol):
    """Fetch URLs with a size bound; errors are always :class:`FetchError` subclasses."""

    def fetch(self, url: str, *, max_length: int) -> bytes:
        """Download ``url`` completely (retrying transient faults).

        Raises:
            NotFoundError: the server says the file does not exist.
            FetchError: anything else that failed, including a body over ``max_length`` bytes.
        """
        ...

    def submit(
        self, url: str, *, max_length: int, key: Hashable, stream: StreamFactory | None = None
    ) -> None:
        """Queue a download; its :class:`Completion` (tagged ``key``) comes from :meth:`wait`.

        With ``stream``, a body the factory accepts is written to the stream it returns instead
        of being held in memory (bounded memory for large objects).
        """
        ...

    def wait(self, timeout: float | None = None) -> Completion:
        """Block until one submitted request finishes and return it.

        Raises:
            FetchError: if nothing is pending, or nothing finished within ``timeout`` seconds.
        """
        ...

    @property
    def pending(self) -> int:
        """Submitted requests whose completion has not been returned by :meth:`wait` yet."""
        ...

    @property
    def stats(self) -> FetchStats:
        """Counters for the final report and the benchmark."""
        ...

    def close(self) -> None:
        """Drop connections and stop background threads; pending requests are abandoned."""
        ...


@dataclass(slots=True)
class FetchStats:
    """Mutable counters a fetcher keeps (requests sent, body bytes received, retries)."""

    requests: int = 0
    bytes: int = 0
    retries: int = 0


def join_url(base: str, path: str) -> str:
    """``base`` + ``/`` + ``path`` (ostree treats the remote URL as a directory)."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def open_fetcher(url: str, config: FetchConfig | None = None) -> Fetcher:
    """The fetcher for ``url``'s scheme (``http``, ``https`` or ``file``).

    Raises:
        FetchError: for an unsupported scheme.
    """
    cfg = config or FetchConfig()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "file":
        from bootree.transport.file import FileFetcher

        return FileFetcher()
    if scheme in ("http", "https"):
        backend = os.environ.get("BOOTREE_HTTP_BACKEND", cfg.backend)
        if backend == "httpx" or (backend == "auto" and cfg.proxy):
            from bootree.transport.httpx_fetcher import HttpxFetcher

            return HttpxFetcher(cfg)
        from bootree.transport.http import PipelinedHttpFetcher

        return PipelinedHttpFetcher(cfg)
    raise FetchError(url, f"Invalid URI scheme in {url} (only file, http and https are supported)")
