"""Object sources: where a pull's objects come from, behind one small interface.

Layer: pull. The engine asks an :class:`ObjectSource` for objects by type and checksum and
collects :class:`Arrival` values in any order; it never builds a URL or opens a file itself.
Two sources exist:

* :class:`HttpSource` maps objects to the paths of a remote archive repository
  (``objects/ab/cdef….filez``) under the remote's URL (``contenturl`` for content) and fetches
  them with any :class:`~bootree.transport.Fetcher` (HTTP, ``file://``, in-memory);
* :class:`LocalRepoSource` reads another local repository of any mode directly (``pull-local``).

**Adding a source** (an OCI layer store, a peer on the LAN): implement :class:`ObjectSource`.
``submit`` must never raise for a per-object problem: it reports it as the arrival's ``error``
(a :class:`~bootree.errors.NotFoundError` for an object the source does not have, so optional
objects and history ends are recognised). ``framing`` says how content objects arrive
(``.filez`` or checksum stream); ``stream``, when given, receives large content bodies instead of
memory (see :class:`bootree.transport.BodyStream`). What arrives is verified by the engine
whatever the source, so a source never needs to be trusted.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from bootree.errors import BootreeError, FetchError, NotFoundError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming
from bootree.pull.options import PullConfig
from bootree.pull.plan import Action, object_path
from bootree.repo import Repo, RepoMode
from bootree.transport import BodyStream, Fetcher, StreamFactory, join_url

__all__ = ["Arrival", "CachedSource", "HttpSource", "LocalRepoSource", "ObjectSource"]

_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Arrival:
    """One object's outcome: its bytes (``b""`` if they went to ``stream``) or an error."""

    action: Action
    data: bytes | None
    error: BootreeError | None
    stream: BodyStream | None = None
    #: A local archive ``.filez`` to adopt by hardlink instead of bytes (``data`` is ``b""``).
    link_from: str | None = None
    #: How this content object arrived, when not in the source's :attr:`ObjectSource.framing`
    #: (an object from a bare-family cache repository of a :class:`CachedSource`).
    framing: ContentFraming | None = None
    #: It came from a local cache repository, not the remote (ostree counts those as "local").
    cached: bool = False


class ObjectSource(Protocol):
    """Where objects come from (see the module docstring for the contract)."""

    @property
    def framing(self) -> ContentFraming:
        """How content objects arrive."""
        ...

    @property
    def pending(self) -> int:
        """Submitted objects whose arrival has not been returned by :meth:`wait`."""
        ...

    @property
    def requests(self) -> int:
        """Requests made so far (for the result and the benchmark)."""
        ...

    def submit(self, action: Action, *, stream: StreamFactory | None = None) -> None:
        """Ask for ``action``'s object; its :class:`Arrival` comes from :meth:`wait`."""
        ...

    def wait(self) -> Arrival:
        """The next arrival, in any order."""
        ...

    def close(self) -> None:
        """Release connections or files."""
        ...


#: A stand-in checksum, split out of an object's URL to leave the parts around it.
_PLACEHOLDER = Checksum("0" * 64)
_PLACEHOLDER_PATH = f"{_PLACEHOLDER[:2]}/{_PLACEHOLDER[2:]}"


class HttpSource:
    """Objects of a remote archive repository, fetched by URL with any fetcher."""

    framing = ContentFraming.ARCHIVED

    def __init__(self, fetcher: Fetcher, url: str, content_url: str | None, config: PullConfig) -> None:
        self.fetcher = fetcher
        self.url = url
        self.content_url = content_url or url
        self.config = config
        # Per type, what :meth:`submit` needs: the URL before and after the checksum, the size
        # limit. Built once; a pull submits thousands of objects of a handful of types.
        self._by_type: dict[ObjectType, tuple[str, str, int]] = {}
        for otype in ObjectType:
            base = self.url if otype is ObjectType.COMMIT_META else self.content_url
            before, sep, after = join_url(base, object_path(otype, _PLACEHOLDER)).rpartition(_PLACEHOLDER_PATH)
            assert sep, "object_path puts the checksum as ab/cdef…"
            limit = config.max_content_size if otype is ObjectType.FILE else config.max_metadata_size
            self._by_type[otype] = (before, after, limit)

    @property
    def pending(self) -> int:
        """Requests in flight."""
        return self.fetcher.pending

    @property
    def requests(self) -> int:
        """HTTP requests sent (retries included)."""
        return self.fetcher.stats.requests

    def url_of(self, otype: ObjectType, csum: Checksum) -> str:
        """The URL of an object: as ostree, every object under ``contenturl`` but ``.commitmeta``
        (signatures, like summary and config, must not come from a content mirror)."""
        before, after, _ = self._by_type[otype]
        return before + csum[:2] + "/" + csum[2:] + after

    def submit(self, action: Action, *, stream: StreamFactory | None = None) -> None:
        """Queue the download of ``action``'s object, bounded by its type's size limit."""
        before, after, limit = self._by_type[action.otype]
        csum = action.checksum
        url = before + csum[:2] + "/" + csum[2:] + after
        self.fetcher.submit(url, max_length=limit, key=action, stream=stream)

    def wait(self) -> Arrival:
        """The next finished download."""
        done = self.fetcher.wait()
        assert isinstance(done.key, Action)
        return Arrival(done.key, done.data, done.error, done.stream)

    def close(self) -> None:
        """Nothing: the fetcher belongs to the remote session."""


class LocalRepoSource:
    """Objects read straight out of another local repository (any mode), for ``pull-local``.

    An archive source hands over its ``.filez`` files; a bare-family source hands over each
    content object as a checksum stream (``u32be(len(H)) 0000 H content``). Reads are
    synchronous: an arrival is ready as soon as it is submitted.
    """

    def __init__(self, source: Repo, config: PullConfig, *, link: bool = False) -> None:
        self.source = source
        self.config = config
        #: Hand over an archive source's content objects as paths to hardlink (the destination
        #: is an archive repository too), as ``ostree pull-local`` does.
        self.link = link and source.mode is RepoMode.ARCHIVE
        self.framing = ContentFraming.ARCHIVED if source.mode is RepoMode.ARCHIVE else ContentFraming.STREAM
        self._done: deque[Arrival] = deque()
        self._requests = 0

    @property
    def pending(self) -> int:
        """Arrivals not yet returned."""
        return len(self._done)

    @property
    def requests(self) -> int:
        """Objects read."""
        return self._requests

    def submit(self, action: Action, *, stream: StreamFactory | None = None) -> None:
        """Read the object now; a missing one arrives as :class:`NotFoundError`."""
        self._requests += 1
        where = f"{self.source.path}/{object_path(action.otype, action.checksum)}"
        try:
            arrival = self._read(action, where, stream)
        except BootreeError as e:
            err = e if isinstance(e, FetchError) else FetchError(where, str(e))
            arrival = Arrival(action, None, err)
        except OSError as e:
            arrival = Arrival(action, None, FetchError(where, e.strerror or str(e)))
        self._done.append(arrival)

    def _read(self, action: Action, where: str, stream: StreamFactory | None) -> Arrival:
        src, otype, c = self.source, action.otype, action.checksum
        if otype is ObjectType.COMMIT_META:
            meta = src.read_commitmeta(c)
            if meta is None:
                raise NotFoundError(where)
            return Arrival(action, meta, None)
        if not src.has_object(otype, c):
            raise NotFoundError(where)
        if otype is not ObjectType.FILE:
            return Arrival(action, src.load_metadata(otype, c), None)
        if src.mode is RepoMode.ARCHIVE:
            path = src.object_path(ObjectType.FILE, c)
            if self.link:
                return Arrival(action, b"", None, link_from=str(path))
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self._check_size(where, size)
                return self._deliver(action, b"", f.read, size, stream)
        obj = src.open_file(c)
        with obj:
            prefix = obj.header.checksum_prefix()
            size = len(prefix) + max(obj.size, 0)
            self._check_size(where, size)
            read = obj.stream.read if obj.stream is not None else (lambda _n=-1: b"")
            return self._deliver(action, prefix, read, size, stream)

    def _check_size(self, where: str, size: int) -> None:
        if size > self.config.max_content_size:
            raise FetchError(where, f"too large: {size} bytes, limit is {self.config.max_content_size}")

    def _deliver(
        self,
        action: Action,
        prefix: bytes,
        read: _Read,
        size: int,
        stream: StreamFactory | None,
    ) -> Arrival:
        target = stream(size) if stream is not None else None
        if target is None:
            return Arrival(action, prefix + read(-1), None)
        try:
            if prefix:
                target.write(prefix)
            while chunk := read(_CHUNK):
                target.write(chunk)
        except BaseException:
            target.abort()
            raise
        return Arrival(action, b"", None, target)

    def wait(self) -> Arrival:
        """The oldest arrival.

        Raises:
            FetchError: if nothing was submitted.
        """
        if not self._done:
            raise FetchError(str(self.source.path), "no request pending")
        return self._done.popleft()

    def close(self) -> None:
        """Drop arrivals not collected."""
        self._done.clear()


class CachedSource:
    """A source with local cache repositories in front (``pull --localcache-repo``, as ostree):
    an object one of them has is read from there (hardlinked into an archive repository when
    it is one too), every other one comes from the wrapped source. All of them are verified
    by the engine like fetched ones, so a cache is never trusted either.
    """

    def __init__(self, inner: ObjectSource, caches: list[LocalRepoSource]) -> None:
        self.inner = inner
        self.caches = caches
        self._done: deque[Arrival] = deque()

    @property
    def framing(self) -> ContentFraming:
        """The wrapped source's framing (arrivals from a cache of another mode say their own)."""
        return self.inner.framing

    @property
    def pending(self) -> int:
        """Cache arrivals not yet returned and the wrapped source's pending requests."""
        return len(self._done) + self.inner.pending

    @property
    def requests(self) -> int:
        """Requests of the wrapped source (cache reads are not requests)."""
        return self.inner.requests

    def _cache_for(self, action: Action) -> LocalRepoSource | None:
        for cache in self.caches:
            src = cache.source
            if action.otype is ObjectType.COMMIT_META:
                if src.has_object(ObjectType.COMMIT, action.checksum) and src.read_commitmeta(action.checksum) is not None:
                    return cache
            elif src.has_object(action.otype, action.checksum):
                return cache
        return None

    def submit(self, action: Action, *, stream: StreamFactory | None = None) -> None:
        """Read ``action``'s object from the first cache that has it, else ask the wrapped source."""
        cache = self._cache_for(action)
        if cache is None:
            self.inner.submit(action, stream=stream)
            return
        same = cache.framing is self.inner.framing
        cache.submit(action, stream=stream if same else None)
        got = cache.wait()
        if got.error is not None:  # the cache failed us (a race, a broken object): fetch it instead
            self.inner.submit(action, stream=stream)
            return
        self._done.append(dataclasses.replace(got, cached=True, framing=None if same else cache.framing))

    def wait(self) -> Arrival:
        """A cache arrival if one is waiting, else the wrapped source's next."""
        if self._done:
            return self._done.popleft()
        return self.inner.wait()

    def close(self) -> None:
        """Close the caches (the wrapped source belongs to its caller)."""
        for cache in self.caches:
            cache.close()
        self._done.clear()


class _Read(Protocol):
    def __call__(self, n: int = -1, /) -> bytes: ...
