"""An in-memory fetcher: a dict of URL -> bytes with injectable faults, for tests and simulators.

Layer: transport. It goes through the same :class:`~bootree.transport.base.SyncFetcher` base as
the real fetchers (so retries, the 404 mapping and the size bound are the real ones), which makes
it the remote of pull tests that must run in milliseconds: a fault (a status, a truncated or
garbled body, a stall, a dropped connection) is armed per URL suffix for a number of requests,
and ``shuffle`` returns completions in a random order, as a pipelined server under load would.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from bootree.transport import Completion, FetchConfig
from bootree.transport.base import BodySink, SyncFetcher

__all__ = ["Fault", "FaultKind", "MemoryFetcher"]


class FaultKind(Enum):
    """What goes wrong with a response."""

    STATUS = "status"  # answer with ``Fault.status`` instead
    TRUNCATE = "truncate"  # announce the full length, deliver half
    GARBLE = "garble"  # flip the first 16 bytes
    STALL = "stall"  # no byte arrives (a read timeout)
    RESET = "reset"  # the connection drops before the response


@dataclass(slots=True)
class Fault:
    """A fault and how many more requests it affects (-1: all)."""

    kind: FaultKind
    count: int = 1
    status: int = 500


class MemoryFetcher(SyncFetcher):
    """Serves ``files`` (URL -> bytes); records every requested URL in :attr:`hits`."""

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        config: FetchConfig | None = None,
        *,
        shuffle: random.Random | None = None,
    ) -> None:
        super().__init__(config, threads=0)
        self.files: dict[str, bytes] = dict(files or {})
        self.hits: list[str] = []
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._shuffle = shuffle
        self._held: list[Completion] = []

    def add_fault(self, suffix: str, kind: FaultKind, count: int = 1, *, status: int = 500) -> None:
        """Make the next ``count`` requests of URLs ending in ``suffix`` fail with ``kind``."""
        with self._lock:
            self._faults[suffix] = Fault(kind, count, status)

    def clear_faults(self) -> None:
        """Serve everything normally again."""
        with self._lock:
            self._faults.clear()

    def _take(self, url: str) -> Fault | None:
        with self._lock:
            self.hits.append(url)
            for suffix, fault in self._faults.items():
                if url.endswith(suffix) and fault.count != 0:
                    if fault.count > 0:
                        fault.count -= 1
                    return fault
        return None

    def _fetch_once(self, url: str, body: BodySink) -> tuple[int, Mapping[str, str]]:
        fault = self._take(url)
        data = self.files.get(url)
        if fault is not None and fault.kind is FaultKind.STATUS:
            return fault.status, {}
        if fault is not None and fault.kind is FaultKind.STALL:
            raise TimeoutError("no data")
        if fault is not None and fault.kind is FaultKind.RESET:
            raise ConnectionResetError(104, "Connection reset by peer")
        if data is None:
            return 404, {}
        body.start(len(data))
        if fault is not None and fault.kind is FaultKind.TRUNCATE:
            body.add(data[: len(data) // 2])
            return 200, {}  # BodySink.finish reports the truncation
        if fault is not None and fault.kind is FaultKind.GARBLE:
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        if data:
            body.add(data)
        return 200, {}

    def wait(self, timeout: float | None = None) -> Completion:
        """The next completion; with ``shuffle``, a random one of those available."""
        if self._shuffle is None:
            return super().wait(timeout)
        if not self._held:
            self._held.append(super().wait(timeout))
        while not self._done.results.empty():
            self._held.append(self._done.results.get_nowait())
            self._done.pending -= 1
        return self._held.pop(self._shuffle.randrange(len(self._held)))

    @property
    def pending(self) -> int:
        """Submitted requests not yet returned by :meth:`wait`."""
        return self._done.pending + len(self._held)

