"""A fetcher that serves objects straight out of a local repository, for ``pull-local``.

Layer: pull (it reads a :class:`~bootree.repo.Repo`, so it cannot live in transport). It
answers the puller's object paths (``objects/ab/cd….filez``) from a repository of any mode: an
archive source hands over its ``.filez`` bytes; a bare-family source hands over the content's
checksum stream (``u32be(len(H)) 0000 H content``), which the puller writes with
``write_file(..., expected=)``. Either way every object is re-verified on the way in, so a corrupt
source cannot corrupt the destination.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from bootree.errors import BootreeError, FetchError, NotFoundError
from bootree.format.checksum import Checksum, is_checksum
from bootree.format.objects import ObjectType
from bootree.repo import Repo, RepoMode
from bootree.transport import Completion, FetchStats

__all__ = ["LocalRepoFetcher"]

_TYPES = {
    "filez": ObjectType.FILE,
    "dirtree": ObjectType.DIR_TREE,
    "dirmeta": ObjectType.DIR_META,
    "commit": ObjectType.COMMIT,
    "commitmeta": ObjectType.COMMIT_META,
}


class LocalRepoFetcher:
    """Implements :class:`~bootree.transport.Fetcher` for ``local-repo:`` object URLs."""

    def __init__(self, source: Repo) -> None:
        self.source = source
        self.base_url = "local-repo:"
        self._done: deque[Completion] = deque()
        self._stats = FetchStats()

    @property
    def stats(self) -> FetchStats:
        """Objects read and their bytes."""
        return self._stats

    @property
    def pending(self) -> int:
        """Completions not yet returned."""
        return len(self._done)

    def _read(self, path: str) -> bytes:
        parts = path.split("/")
        if len(parts) != 3 or parts[0] != "objects":
            raise NotFoundError(path)
        stem, _, ext = parts[2].partition(".")
        csum = parts[1] + stem
        otype = _TYPES.get(ext)
        if otype is None or not is_checksum(csum):
            raise NotFoundError(path)
        c = Checksum(csum)
        src = self.source
        if otype is ObjectType.COMMIT_META:
            meta = src.read_commitmeta(c)
            if meta is None:
                raise NotFoundError(path)
            return meta
        if not src.has_object(otype, c):
            raise NotFoundError(path)
        if otype is not ObjectType.FILE:
            return src.load_metadata(otype, c)
        if src.mode is RepoMode.ARCHIVE:
            return src.object_path(ObjectType.FILE, c).read_bytes()
        header, content = src.load_file(c)
        return header.checksum_prefix() + content

    def fetch(self, url: str, *, max_length: int) -> bytes:
        """Read one object (``url`` is ``local-repo:`` + its path)."""
        path = url.removeprefix(self.base_url).lstrip("/")
        self._stats.requests += 1
        try:
            data = self._read(path)
        except FetchError:
            raise
        except (BootreeError, OSError) as e:
            raise FetchError(url, str(e)) from e
        if len(data) > max_length:
            raise FetchError(url, f"too large: over {max_length} bytes")
        self._stats.bytes += len(data)
        return data

    def submit(self, url: str, *, max_length: int, key: Hashable) -> None:
        """Read now; returned by the next :meth:`wait`."""
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
