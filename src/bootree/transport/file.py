"""``file://`` fetcher: a local directory seen through the :class:`~bootree.transport.Fetcher` API.

Layer: transport. Lets the same puller code pull from a repository on a local path (tests,
USB sticks, ``pull`` with a ``file://`` remote) with the same size bounds and error types as
HTTP. A missing file is :class:`NotFoundError`, like an HTTP 404.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request

from bootree.errors import FetchError, NotFoundError
from bootree.transport import ImmediateFetcher

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


class FileFetcher(ImmediateFetcher):
    """Reads files synchronously; :meth:`submit` completes at once (local reads are cheap)."""

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
        return self._check_length(url, data, max_length)



