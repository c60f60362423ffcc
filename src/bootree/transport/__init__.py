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

Implementations: :class:`~bootree.transport.http.PipelinedHttpFetcher` (default for ``http`` and
``https``: a small HTTP/1.1 client with keep-alive and request pipelining),
:class:`~bootree.transport.httpx_fetcher.HttpxFetcher` (httpx, used for proxies and when asked
for) and :class:`~bootree.transport.file.FileFetcher` (``file://``).
"""

from __future__ import annotations

import os
import queue
import urllib.parse
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bootree.errors import FetchError, NotFoundError

__all__ = [
    "Completion",
    "FetchConfig",
    "FetchError",
    "Fetcher",
    "NotFoundError",
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
    ``max_attempts`` and the backoff ride out transient faults (5xx, resets, truncated bodies)
    without hammering a struggling server; ``connections`` x ``pipeline_depth`` is the number of
    requests in flight.
    """

    #: Seconds to establish a TCP (and TLS) connection.
    connect_timeout: float = 15.0
    #: Seconds without receiving a single byte before a request counts as stalled.
    read_timeout: float = 30.0
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
    """One finished request of :meth:`Fetcher.submit`: either ``data`` or ``error`` is set."""

    key: Hashable
    url: str
    data: bytes | None
    error: FetchError | None


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

    def submit(self, url: str, *, max_length: int, key: Hashable) -> None:
        """Queue a download; its :class:`Completion` (tagged ``key``) comes from :meth:`wait`."""
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


class ImmediateFetcher:
    """Base for fetchers that read synchronously (local files, another local repository).

    :meth:`submit` does the read at once and queues its completion, so these fetchers fit the
    same submit/wait loop as the HTTP ones. Subclasses implement :meth:`fetch`.
    """

    def __init__(self) -> None:
        self._done: deque[Completion] = deque()
        self._stats = FetchStats()

    @property
    def stats(self) -> FetchStats:
        """Reads made and their bytes."""
        return self._stats

    @property
    def pending(self) -> int:
        """Completions not yet returned by :meth:`wait`."""
        return len(self._done)

    def fetch(self, url: str, *, max_length: int) -> bytes:
        """Read ``url`` (subclasses).

        Raises:
            FetchError: always, in this base class.
        """
        raise FetchError(url, "this fetcher cannot read URLs")

    def _check_length(self, url: str, data: bytes, max_length: int) -> bytes:
        if len(data) > max_length:
            raise FetchError(url, f"too large: exceeded maximum size {max_length}")
        self._stats.bytes += len(data)
        return data

    def submit(self, url: str, *, max_length: int, key: Hashable) -> None:
        """Read now; the completion is returned by the next :meth:`wait`."""
        try:
            self._done.append(Completion(key, url, self.fetch(url, max_length=max_length), None))
        except FetchError as e:
            self._done.append(Completion(key, url, None, e))

    def wait(self, timeout: float | None = None) -> Completion:
        """The oldest completion.

        Raises:
            FetchError: if nothing was submitted.
        """
        if not self._done:
            raise FetchError("", "no request pending")
        return self._done.popleft()

    def close(self) -> None:
        """Nothing to release."""
        self._done.clear()


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
    raise FetchError(url, f"unsupported URL scheme {scheme!r}")
