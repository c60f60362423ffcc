"""``file://`` fetcher: a local directory seen through the :class:`~bootree.transport.Fetcher` API.

Layer: transport. Lets the same puller code pull from a repository on a local path (tests,
USB sticks, ``pull`` with a ``file://`` remote) with the same size bounds and error types as
HTTP. A missing file is :class:`NotFoundError`, like an HTTP 404.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Hashable

from bootree.errors import FetchError, NotFoundError
from bootree.transport import Completion, FetchStats

__all__ = ["FileFetcher", "file_url_path"]


def file_url_path(url: str) -> str:
    """The local path of a ``file://`` URL.

    Raises:
        FetchError: for a URL that is not ``file://`` or names a remote host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise FetchError(url, "not a local file:// URL")
    return urllib.request.url2pathname(parts.path)


class FileFetcher:
    """Reads files synchronously; :meth:`submit` completes at once (local reads are cheap)."""

    def __init__(self) -> None:
        self._done: deque[Completion] = deque()
        self._stats = FetchStats()

    @property
    def stats(self) -> FetchStats:
        """Files read and their bytes."""
        return self._stats

    @property
    def pending(self) -> int:
        """Completions not yet returned by :meth:`wait`."""
        return len(self._done)

    def fetch(self, url: str, *, max_length: int) -> bytes:
        """Read the file ``url`` names, refusing more than ``max_length`` bytes."""
        path = file_url_path(url)
        self._stats.requests += 1
        try:
            with open(path, "rb") as f:
                data = f.read(max_length + 1)
        except FileNotFoundError:
            raise NotFoundError(url) from None
        except IsADirectoryError:
            raise NotFoundError(url) from None
        except OSError as e:
            raise FetchError(url, os.strerror(e.errno) if e.errno else str(e)) from e
        if len(data) > max_length:
            raise FetchError(url, f"too large: over {max_length} bytes")
        self._stats.bytes += len(data)
        return data

    def submit(self, url: str, *, max_length: int, key: Hashable) -> None:
        """Read now; the result is returned by the next :meth:`wait`."""
        try:
            self._done.append(Completion(key, url, self.fetch(url, max_length=max_length), None))
        except FetchError as e:
            self._done.append(Completion(key, url, None, e))

    def wait(self, timeout: float | None = None) -> Completion:
        """The oldest completion."""
        if not self._done:
            raise FetchError("", "no request pending")
        return self._done.popleft()

    def close(self) -> None:
        """Nothing to release."""
        self._done.clear()
