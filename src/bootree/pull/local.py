"""A fetcher that serves objects straight out of a local repository, for ``pull-local``.

Layer: pull (it reads a :class:`~bootree.repo.Repo`, so it cannot live in transport). It
answers the puller's object paths (``objects/ab/cd….filez``) from a repository of any mode: an
archive source hands over its ``.filez`` bytes; a bare-family source hands over the content's
checksum stream (``u32be(len(H)) 0000 H content``), which the puller writes with
``write_file(..., expected=)``. Either way every object is re-verified on the way in, so a corrupt
source cannot corrupt the destination.
"""

from __future__ import annotations

from bootree.errors import BootreeError, FetchError, NotFoundError
from bootree.format.checksum import parse_object_name
from bootree.format.objects import ObjectType
from bootree.repo import Repo, RepoMode
from bootree.transport import ImmediateFetcher

__all__ = ["LocalRepoFetcher"]

class LocalRepoFetcher(ImmediateFetcher):
    """Implements :class:`~bootree.transport.Fetcher` for ``local-repo:`` object URLs."""

    def __init__(self, source: Repo) -> None:
        super().__init__()
        self.source = source
        self.base_url = "local-repo:"

    def _read(self, path: str) -> bytes:
        parts = path.split("/")
        if len(parts) != 3 or parts[0] != "objects":
            raise NotFoundError(path)
        parsed = parse_object_name(parts[1], parts[2])
        if parsed is None:
            raise NotFoundError(path)
        otype, c = parsed
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
        return self._check_length(url, data, max_length)



