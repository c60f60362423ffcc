"""Push an image to a registry with the OCI distribution API (bootc-oci.md §3.5).

Layer: oci, on httpx, beside :mod:`~bootree.oci.registry` (whose auth flow it shares: Basic, or
a Bearer token for ``repository:NAME:pull,push``, plus ``repository:FROM:pull`` for a mount).
For each blob, config and layers, before the manifest:

1. ``HEAD /v2/<name>/blobs/<digest>``: present, nothing to send (skopeo's rule);
2. a **cross-repository mount** when the blob is known to live in another repository of the same
   registry (``--mount-from``, or the blob-location cache of earlier pushes, as containers/image
   keeps one): ``POST …/blobs/uploads/?mount=<digest>&from=<repo>``, 201 = done; 202 = the
   registry declined and opened an ordinary upload session, which is used;
3. otherwise an upload: **monolithic** (``POST`` then ``PUT <Location>&digest=``, the body streamed
   from the file) up to ``chunk_size``, **chunked** above it (``PATCH`` with
   ``Content-Range: start-end``, always to the newest ``Location``, then an empty ``PUT
   …&digest=``); no blob is ever held in memory whole, a chunk at most. A chunk that fails
   (connection cut, 5xx, 416) is **resumed**, not restarted: ``GET <Location>`` asks the
   registry how much of the session it holds (``204``, ``Range: 0-<last byte>``; a registry may
   have kept part of the cut chunk) and the upload goes on from there; the ``Range`` of each
   accepted ``PATCH`` is the registry's word on the offset too. Only a session the registry no
   longer knows (404, or 400 ``BLOB_UPLOAD_INVALID``) starts again, from byte 0;
4. ``PUT /v2/<name>/manifests/<tag>`` with the manifest's exact bytes and media type.

Blobs go up two at a time (``PushOptions.jobs``); the manifest only once every blob is in.

Errors are :class:`~bootree.errors.PushError` (``pushing to URL: why``); 429/5xx and connection
errors are retried with backoff where the request can be replayed (not a half-sent chunk).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin

import httpx

from bootree import _fs
from bootree.errors import PushError, RegistryError
from bootree.oci.reference import DockerReference
from bootree.oci.registry import RegistryClient, RegistryOptions

__all__ = ["BlobLocations", "BlobToPush", "PushOptions", "PushResult", "PushStats", "RegistryPusher", "push_blobs"]

log = logging.getLogger(__name__)

_RETRY = frozenset({429, 500, 502, 503, 504})
_READ = 1 << 20
_MAX_REPOS_PER_BLOB = 8
_MAX_BLOBS_PER_HOST = 20000


@dataclass(frozen=True, slots=True)
class PushOptions:
    """Upload tuning: chunk size, mount sources, the blob-location cache."""

    chunk_size: int = 64 << 20
    """Blobs larger than this go up in chunks of this size (``PATCH``); smaller ones in one ``PUT``."""
    mount_from: tuple[str, ...] = ()
    """Repositories of the same registry to try mounting every blob from."""
    location_cache: Path | None = None
    """Where pushed blobs were seen (default ``$XDG_CACHE_HOME/bootree/blob-locations.json``)."""
    use_location_cache: bool = True
    jobs: int = 2
    """Blobs uploaded at the same time."""


@dataclass
class PushStats:
    """What a push did, blob by blob (the tests compare it with the registry's log)."""

    skipped: int = 0
    mounted: int = 0
    uploaded: int = 0
    chunked: int = 0
    bytes_sent: int = 0
    """Bytes of accepted uploads (a chunk cut off in transit is not counted)."""
    resumed: int = 0
    """Times a chunked upload was picked up again at the registry's offset after a failed chunk."""
    restarted: int = 0
    """Times a chunked upload began again from byte 0 (the registry had dropped the session)."""
    requests: int = 0
    by_digest: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PushResult:
    """The pushed manifest's digest and what it took."""

    reference: DockerReference
    digest: str
    stats: PushStats


@dataclass(frozen=True, slots=True)
class BlobToPush:
    """A blob on disk with its digest and size."""

    digest: str
    size: int
    path: Path


class BlobLocations:
    """Which repositories of a registry are known to hold a blob (a JSON file; best effort)."""

    def __init__(self, path: Path | None) -> None:
        if path is None:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            path = Path(base) / "bootree" / "blob-locations.json"
        self.path = path
        try:
            doc = json.loads(path.read_text("utf-8"))
            self.data: dict[str, dict[str, list[str]]] = doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            self.data = {}

    def repositories(self, host: str, digest: str) -> list[str]:
        """Known repositories holding ``digest`` on ``host``, most recent first."""
        got = self.data.get(host, {}).get(digest, [])
        return [r for r in got if isinstance(r, str)]

    def record(self, host: str, digest: str, repository: str) -> None:
        """Remember that ``repository`` holds ``digest``."""
        blobs = self.data.setdefault(host, {})
        repos = [repository, *(r for r in blobs.pop(digest, []) if r != repository)]
        blobs[digest] = repos[:_MAX_REPOS_PER_BLOB]
        while len(blobs) > _MAX_BLOBS_PER_HOST:
            blobs.pop(next(iter(blobs)))

    def save(self) -> None:
        """Write the cache atomically; a cache that cannot be written is only logged."""
        try:
            _fs.makedirs(self.path.parent)
            _fs.write_atomic(self.path, json.dumps(self.data, sort_keys=True).encode(), fsync=False)
        except OSError as e:
            log.warning("cannot write %s: %s", self.path, e)


def _file_chunks(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left:
            data = f.read(min(_READ, left))
            if not data:
                raise PushError(str(path), f"file shrank while being uploaded ({left} bytes missing)")
            left -= len(data)
            yield data


def _range_end(value: str | None) -> int | None:
    """The last byte of a registry's ``Range: 0-N`` (``bytes=0-N`` too), or ``None``."""
    if not value:
        return None
    first, sep, last = value.strip().removeprefix("bytes=").partition("-")
    if not sep or first.strip() != "0" or not last.strip().isdigit():
        return None
    return int(last)


def _with_query(location: str, **params: str) -> str:
    return location + ("&" if "?" in location else "?") + urlencode(params, quote_via=quote)


class RegistryPusher(RegistryClient):
    """A registry client that can also write: blobs (with mounts) and manifests."""

    def __init__(self, host: str, options: RegistryOptions | None = None, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``transport`` replaces the network, as for :class:`RegistryClient`."""
        super().__init__(host, options, transport=transport)
        self.push_stats = PushStats()
        self._stats_lock = threading.Lock()

    def _bump(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            setattr(self.push_stats, name, getattr(self.push_stats, name) + n)

    def _base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def _request(self, method: str, url: str, repository: str, headers: dict[str, str] | None = None,
                 body: Callable[[], Iterator[bytes] | bytes] | None = None, *, replayable: bool = True,
                 params: dict[str, str] | None = None) -> httpx.Response:
        """One write-side request with auth and retries; the response is read (push answers are small)."""
        attempt = 0
        authed = False
        while True:
            h = dict(headers or {})
            if repository in self._auth:
                h["Authorization"] = self._auth[repository]
            content = body() if body is not None else None
            try:
                self._bump("requests")
                r = self._client.request(method, url, headers=h, content=content, params=params)
            except (httpx.TransportError, httpx.DecodingError) as e:
                if replayable and attempt < self.options.retries:
                    attempt += 1
                    time.sleep(self.options.backoff * (2**attempt))
                    continue
                raise PushError(url, str(e) or type(e).__name__, transient=True) from None
            if r.status_code == 401 and not authed:
                authed = True
                self._auth.pop(repository, None)
                self._authorize(repository, r.headers.get("WWW-Authenticate", ""))
                continue
            if r.status_code in _RETRY and replayable and attempt < self.options.retries:
                retry_after = r.headers.get("Retry-After", "")
                attempt += 1
                time.sleep(min(float(retry_after) if retry_after.isdigit() else self.options.backoff * (2**attempt),
                               30.0))
                continue
            return r

    def _fail(self, url: str, r: httpx.Response, what: str) -> PushError:
        err = self._error(url, r)
        return PushError(url, f"{what}: {err.why}", status=r.status_code, transient=err.transient)

    # --- blobs -------------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        """``HEAD`` the blob: 200 = present, 404 = absent.

        Raises:
            PushError: for any other answer.
        """
        url = f"{self._base()}/v2/{repository}/blobs/{digest}"
        r = self._request("HEAD", url, repository)
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise self._fail(url, r, f"checking blob {digest}")

    def _location(self, r: httpx.Response, url: str) -> str:
        loc = r.headers.get("Location")
        if not loc:
            raise PushError(url, f"HTTP {r.status_code} without a Location header")
        return urljoin(url, str(loc))

    def start_upload(self, repository: str, *, mount: str | None = None, source: str | None = None) -> str | None:
        """Open an upload session; with ``mount``/``source`` try a mount first.

        Returns:
            ``None`` if the mount succeeded (201), else the session's Location.

        Raises:
            PushError: for a refused request (401/403: no push rights).
        """
        url = f"{self._base()}/v2/{repository}/blobs/uploads/"
        params = {"mount": mount, "from": source} if mount and source else None
        r = self._request("POST", url, repository, {"Content-Length": "0"}, params=params)
        if r.status_code == 201 and params:
            return None
        if r.status_code == 202:
            return self._location(r, url)
        raise self._fail(url, r, "starting an upload")

    def upload(self, repository: str, location: str, blob: BlobToPush, chunk_size: int) -> None:
        """Send a blob into an open session, in one ``PUT`` or in ``PATCH`` chunks.

        Raises:
            PushError: for a rejected chunk or a digest the registry does not accept.
        """
        headers = {"Content-Type": "application/octet-stream"}
        if blob.size <= chunk_size:
            r = self._request("PUT", _with_query(location, digest=blob.digest), repository,
                              {**headers, "Content-Length": str(blob.size)},
                              lambda: _file_chunks(blob.path, 0, blob.size))
            if r.status_code != 201:
                raise self._fail(location, r, f"uploading blob {blob.digest}")
            self._bump("bytes_sent", blob.size)
            return
        start = 0
        failures = 0
        while start < blob.size:
            n = min(chunk_size, blob.size - start)
            begin = start
            what = f"uploading bytes {begin}-{begin + n - 1} of blob {blob.digest}"
            try:
                r = self._request("PATCH", location, repository,
                                  {**headers, "Content-Length": str(n), "Content-Range": f"{begin}-{begin + n - 1}"},
                                  functools.partial(_file_chunks, blob.path, begin, n), replayable=False)
            except PushError as e:
                if not e.transient or failures >= self.options.retries:
                    raise
                err: PushError = e
            else:
                if r.status_code == 202:
                    location = self._location(r, location)
                    committed = _range_end(r.headers.get("Range"))
                    start = begin + n if committed is None or committed >= blob.size else committed + 1
                    self._bump("bytes_sent", max(0, start - begin))
                    continue
                err = self._fail(location, r, what)
                if not (r.status_code in _RETRY or r.status_code == 416) or failures >= self.options.retries:
                    raise err
            failures += 1
            time.sleep(self.options.backoff * (2**failures))
            log.info("%s failed (%s); asking the registry where the upload stands", what, err.why)
            location, start = self._resume(repository, location, blob)
            if start > begin:  # the registry kept part of the cut chunk
                self._bump("bytes_sent", start - begin)
        r = self._request("PUT", _with_query(location, digest=blob.digest), repository, {"Content-Length": "0"})
        if r.status_code != 201:
            raise self._fail(location, r, f"finishing blob {blob.digest}")
        self._bump("chunked")

    def upload_offset(self, repository: str, location: str) -> tuple[str, int] | None:
        """``GET`` an upload session: its newest Location and how many bytes it holds (``None``: gone).

        Raises:
            PushError: for an answer other than 204 (held), 404 or 400 (unknown or cancelled).
        """
        r = self._request("GET", location, repository)
        if r.status_code in (404, 400):
            return None
        if r.status_code != 204:
            raise self._fail(location, r, "asking for the state of an upload")
        end = _range_end(r.headers.get("Range"))
        new = urljoin(location, str(r.headers["Location"])) if r.headers.get("Location") else location
        # "0-0" is what distribution says both for an empty session and for one byte: take 0
        # (a PATCH from 0 that the registry refuses with 416 asks again, a bounded number of times).
        return new, 0 if end is None or end == 0 else end + 1

    def _resume(self, repository: str, location: str, blob: BlobToPush) -> tuple[str, int]:
        """Where a chunked upload goes on after a failed chunk: the session's offset, or a new session."""
        state = self.upload_offset(repository, location)
        if state is not None and state[1] <= blob.size:
            self._bump("resumed")
            log.info("resuming blob %s at byte %d", blob.digest, state[1])
            return state
        self._bump("restarted")
        log.info("the registry dropped the upload session of blob %s; starting again", blob.digest)
        fresh = self.start_upload(repository)
        assert fresh is not None
        return fresh, 0

    def push_blob(self, repository: str, blob: BlobToPush, options: PushOptions, sources: list[str]) -> str:
        """Make ``blob`` present in ``repository``: skip, mount or upload; returns which."""
        if self.blob_exists(repository, blob.digest):
            self._bump("skipped")
            return "skipped"
        location: str | None = None
        for src in sources:
            if src == repository:
                continue
            location = self.start_upload(repository, mount=blob.digest, source=src)
            if location is None:
                self._bump("mounted")
                return "mounted"
            break  # a declined mount already opened a session: use it
        if location is None:
            location = self.start_upload(repository)
        assert location is not None
        self.upload(repository, location, blob, options.chunk_size)
        self._bump("uploaded")
        return "uploaded"

    # --- manifests ---------------------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """``PUT`` a manifest's exact bytes; returns the digest the registry reports.

        Raises:
            PushError: for a rejected manifest (``MANIFEST_BLOB_UNKNOWN``...).
        """
        url = f"{self._base()}/v2/{repository}/manifests/{reference}"
        r = self._request("PUT", url, repository, {"Content-Type": media_type}, lambda: data)
        if r.status_code != 201:
            raise self._fail(url, r, "uploading the manifest")
        return r.headers.get("Docker-Content-Digest") or ""


def push_blobs(dest: DockerReference, blobs: list[BlobToPush], manifest: bytes, manifest_digest: str,
               media_type: str, *, options: RegistryOptions | None = None,
               push_options: PushOptions | None = None, progress: Callable[[str], None] | None = None,
               transport: httpx.BaseTransport | None = None) -> PushResult:
    """Push ``blobs`` (config and layers) then the manifest to ``dest`` (its tag, or digest).

    Raises:
        PushError: for any refused request (auth without push rights, a rejected blob...).
    """
    popts = push_options or PushOptions()
    cache = BlobLocations(popts.location_cache) if popts.use_location_cache else None
    host = dest.registry_host
    client = RegistryPusher(host, options, transport=transport)
    with contextlib.closing(client):
        try:
            def one(blob: BlobToPush) -> None:
                sources = list(popts.mount_from)
                if cache is not None:
                    sources += [r for r in cache.repositories(host, blob.digest) if r not in sources]
                how = client.push_blob(dest.repository, blob, popts, sources)
                client.push_stats.by_digest[blob.digest] = how
                if progress:
                    progress(f"blob {blob.digest} ({blob.size} bytes): {how}")

            # Blobs go up ``jobs`` at a time (largest first); the manifest only after all of them.
            with ThreadPoolExecutor(max_workers=max(1, popts.jobs)) as pool:
                for f in [pool.submit(one, b) for b in sorted(blobs, key=lambda b: -b.size)]:
                    f.result()
            digest = client.put_manifest(dest.repository, dest.digest or dest.tag or "latest", manifest, media_type)
        except PushError:
            raise
        except RegistryError as e:  # the shared auth flow speaks of fetching; this is a push
            raise PushError(e.url, e.why, status=e.status, transient=e.transient) from None
        if digest and digest != manifest_digest:
            raise PushError(str(dest), f"registry stored the manifest as {digest}, expected {manifest_digest}")
        if cache is not None:
            for blob in blobs:
                cache.record(host, blob.digest, dest.repository)
            with contextlib.suppress(OSError):
                cache.save()
        return PushResult(dest, manifest_digest, client.push_stats)

