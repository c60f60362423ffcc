"""``file://`` fetcher: a local directory seen through the :class:`~bootree.transport.Fetcher` API.

Layer: transport. Lets the same puller code pull from a repository on a local path (tests,
USB sticks, ``pull`` with a ``file://`` remote) with the same size bounds and error types as
HTTP: a missing file answers 404, which the base turns into :class:`NotFoundError`.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from collections.abc import Mapping

from bootree.errors import FetchError
from bootree.transport import FetchConfig
from bootree.transport.base import BodySink, SyncFetcher

__all__ = ["FileFetcher", "file_url_path"]

_CHUNK = 1024 * 1024


def file_url_path(url: str) -> str:
    """The local path of a ``file://`` URL.

    Raises:
        FetchError: for a URL that is not ``file://`` or names a remote host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise FetchError(url, "not a local file:// URL")
    # What urllib.request.url2pathname does on POSIX; that module costs 30 ms to import.
    return urllib.parse.unquote(parts.path)


class FileFetcher(SyncFetcher):
    """Reads files synchronously; :meth:`submit` completes at once (local reads are cheap)."""

    def __init__(self, config: FetchConfig | None = None) -> None:
        super().__init__(config, threads=0)

    def _fetch_once(self, url: str, body: BodySink) -> tuple[int, Mapping[str, str]]:
        path = file_url_path(url)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return 404, {}
        except OSError as e:
            raise FetchError(url, os.strerror(e.errno) if e.errno else str(e)) from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return 404, {}
            body.start(st.st_size)
            while chunk := os.read(fd, min(_CHUNK, body.max_length + 1 - body.received)):
                body.add(chunk)
                if body.received > body.max_length:
                    break
        except OSError as e:
            raise FetchError(url, os.strerror(e.errno) if e.errno else str(e)) from e
        finally:
            os.close(fd)
        return 200, {}
