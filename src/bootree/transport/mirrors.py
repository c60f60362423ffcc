"""A fetcher over mirrors: each request tries a list of base URLs in order until one answers.

Layer: transport. ostree's ``mirrorlist=URL`` remotes name a text file of base URLs; every
file of the repository (control files and objects alike) is asked of the first mirror, and of
the next one when that fails — a mirror that lacks an object (404) or is down must not fail the
pull while another has it. :class:`MirrorFetcher` does exactly that around any
:class:`~bootree.transport.Fetcher`, for URLs under a *group* of mirrors: the caller builds URLs
under the group's first mirror, as it would for a plain remote, and the fetcher retargets them.

Each attempt keeps the inner fetcher's own retries (transient faults are retried on the same
mirror first). The error of a request that failed everywhere is the last mirror's: a
:class:`~bootree.errors.NotFoundError` only when the last mirror said 404.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from bootree.errors import FetchError
from bootree.transport import Completion, Fetcher, FetchStats, StreamFactory

__all__ = ["MirrorFetcher", "parse_mirrorlist"]


def parse_mirrorlist(text: str) -> list[str]:
    """The base URLs of a mirror list: one a line; blank lines and ``#`` comments skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass(frozen=True, slots=True)
class _Attempt:
    """The inner request of one logical request on mirror ``index`` of its group."""

    key: Hashable
    url: str
    group: int
    index: int
    max_length: int
    stream: StreamFactory | None


class MirrorFetcher:
    """Requests under a mirror group's first URL, tried on each of the group's mirrors in turn.

    ``groups``: lists of base URLs (each non-empty). A URL under no group's first base is
    fetched as it is.
    """

    def __init__(self, inner: Fetcher, groups: Sequence[Sequence[str]]) -> None:
        self.inner = inner
        self.groups = [[m.rstrip("/") for m in g] for g in groups if g]
        self._pending = 0

    def _place(self, url: str) -> tuple[int, str] | None:
        """The group of ``url`` and its path below the group's first mirror."""
        for i, group in enumerate(self.groups):
            base = group[0]
            if url == base or url.startswith(base + "/"):
                return i, url[len(base):]
        return None

    def fetch(self, url: str, *, max_length: int) -> bytes:
        """``url`` from the first mirror that has it (see the module docstring)."""
        placed = self._place(url)
        if placed is None:
            return self.inner.fetch(url, max_length=max_length)
        group, rest = placed
        last: FetchError | None = None
        for mirror in self.groups[group]:
            try:
                return self.inner.fetch(mirror + rest, max_length=max_length)
            except FetchError as e:
                last = e
        assert last is not None
        raise last

    def submit(self, url: str, *, max_length: int, key: Hashable, stream: StreamFactory | None = None) -> None:
        """Queue ``url`` on its group's first mirror; :meth:`wait` moves it on when that fails."""
        self._pending += 1
        placed = self._place(url)
        group, index = (placed[0], 0) if placed is not None else (-1, 0)
        self.inner.submit(url, max_length=max_length, key=_Attempt(key, url, group, index, max_length, stream),
                          stream=stream)

    def wait(self, timeout: float | None = None) -> Completion:
        """The next request that succeeded somewhere or failed on its group's last mirror."""
        while True:
            done = self.inner.wait(timeout)
            attempt = done.key
            assert isinstance(attempt, _Attempt)
            if done.error is not None and attempt.group >= 0:
                mirrors = self.groups[attempt.group]
                if attempt.index + 1 < len(mirrors):
                    rest = attempt.url[len(mirrors[0]):]
                    nxt = _Attempt(attempt.key, attempt.url, attempt.group, attempt.index + 1,
                                   attempt.max_length, attempt.stream)
                    self.inner.submit(mirrors[nxt.index] + rest, max_length=nxt.max_length, key=nxt,
                                      stream=nxt.stream)
                    continue
            self._pending -= 1
            return Completion(attempt.key, done.url, done.data, done.error, done.stream)

    @property
    def pending(self) -> int:
        """Logical requests not yet returned by :meth:`wait`."""
        return self._pending

    @property
    def stats(self) -> FetchStats:
        """The inner fetcher's counters (every mirror attempt is a request)."""
        return self.inner.stats

    def close(self) -> None:
        """Close the inner fetcher."""
        self.inner.close()
