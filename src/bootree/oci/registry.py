"""A client of the OCI distribution API: manifests and blobs, with auth, retries and bounds.

Layer: oci, on httpx. What it guarantees to its callers:

* every manifest is bounded (4 MiB) and checked against the digest it was asked for (or the
  ``Docker-Content-Digest`` the registry claims);
* a blob is streamed to a file, never held in memory, cut off at its declared size, and the
  file is only handed back once its size and sha256 match the descriptor; an interrupted blob
  stays as ``<file>.partial`` and the next try asks for the rest with ``Range``;
* a 401 starts the flow the registry asks for: ``Bearer`` (token from the realm, anonymous or
  with auth.json credentials; cached per scope) or ``Basic``;
* 429/5xx and connection errors are retried with exponential backoff (``Retry-After`` honoured);
* a registry marked insecure in registries.conf is reached over plain HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bootree.errors import RegistryError
from bootree.format.oci import MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, OCI_INDEX, Descriptor, digest_of
from bootree.oci.auth import Credentials, find_credentials, insecure_registries
from bootree.oci.reference import DockerReference

__all__ = ["BlobStats", "BytesFn", "Fetched", "RangeSink", "RegistryClient", "RegistryOptions"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_PARAM = re.compile(r'(\w+)="([^"]*)"')
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to reach registries: credentials file, TLS, retries, timeouts."""

    authfile: Path | None = None
    tls_verify: bool | None = None
    """``None``: verify unless registries.conf marks the registry insecure."""
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Fetched:
    """A manifest or index: the exact bytes, the Content-Type and their digest."""

    data: bytes
    media_type: str | None
    digest: str


@dataclass
class BlobStats:
    """Bytes moved by a client (what ``upgrade`` reports and the tests compare).

    Updated from several download threads: :meth:`count` takes a lock.
    """

    blobs: int = 0
    bytes: int = 0
    resumed: int = 0
    by_digest: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, digest: str, n: int) -> None:
        """Add ``n`` bytes received for ``digest``."""
        with self.lock:
            self.bytes += n
            self.by_digest[digest] = self.by_digest.get(digest, 0) + n

    def blob_done(self, *, resumed: bool = False) -> None:
        """Count a finished blob."""
        with self.lock:
            self.blobs += 1
            self.resumed += resumed


#: Called with the bytes of a blob received so far (including a resumed part).
BytesFn = Callable[[int], None]
#: Called with each piece of a ranged blob read: its offset in the blob and the bytes.
RangeSink = Callable[[int, bytes], None]


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


class RegistryClient:
    """One registry host, reached over one httpx client."""

    def __init__(self, host: str, options: RegistryOptions | None = None, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``transport`` replaces the network (tests use :class:`httpx.MockTransport`)."""
        self.host = host
        self.options = options = options or RegistryOptions()
        insecure = host in insecure_registries() if options.tls_verify is None else not options.tls_verify
        self.scheme = "http" if insecure else "https"
        self._client = httpx.Client(timeout=options.timeout, follow_redirects=True, verify=not insecure,
                                    transport=transport)
        self._auth: dict[str, str] = {}
        self._creds_loaded: dict[str, Credentials | None] = {}
        self.stats = BlobStats()

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests --------------------------------------------------------------------------

    def _url(self, repository: str, kind: str, ref: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{repository}/{kind}/{ref}"

    def _credentials(self, repository: str) -> Credentials | None:
        if repository not in self._creds_loaded:
            self._creds_loaded[repository] = find_credentials(self.host, repository, self.options.authfile)
        return self._creds_loaded[repository]

    def _authorize(self, repository: str, challenge: str) -> None:
        scheme, params = _parse_challenge(challenge)
        creds = self._credentials(repository)
        if scheme == "basic":
            if creds is None:
                raise RegistryError(f"{self.host}/{repository}", "authentication required (401) and no credentials",
                                    status=401)
            raw = f"{creds.username}:{creds.password}".encode()
            self._auth[repository] = "Basic " + base64.b64encode(raw).decode("ascii")
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{self.host}/{repository}", f"unsupported authentication challenge {challenge!r}",
                                status=401)
        # A challenge may name several scopes, space-separated (a cross-repository mount needs
        # pull on the source too): the token service takes each as its own ``scope`` parameter.
        scopes = (params.get("scope") or f"repository:{repository}:pull").split()
        query: list[tuple[str, str | int | float | bool | None]] = [("scope", sc) for sc in scopes]
        if "service" in params:
            query.append(("service", params["service"]))
        auth = httpx.BasicAuth(creds.username, creds.password) if creds else None
        try:
            r = self._client.get(params["realm"], params=query, auth=auth)
        except httpx.HTTPError as e:
            raise RegistryError(params["realm"], f"token request failed: {e}", transient=True) from None
        if r.status_code != 200:
            why = "credentials rejected" if creds else "anonymous token refused"
            raise RegistryError(params["realm"], f"{why} (HTTP {r.status_code})", status=r.status_code)
        try:
            doc = r.json()
            tok = doc.get("token") or doc.get("access_token")
        except ValueError:
            tok = None
        if not isinstance(tok, str) or not tok:
            raise RegistryError(params["realm"], "token response has no token")
        self._auth[repository] = f"Bearer {tok}"

    @contextlib.contextmanager
    def _send(self, method: str, url: str, repository: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """One request with auth and retries; yields the (streamed) final response."""
        attempt = 0
        authed = False
        while True:
            h = dict(headers)
            if repository in self._auth:
                h["Authorization"] = self._auth[repository]
            try:
                with self._client.stream(method, url, headers=h) as r:
                    if r.status_code == 401 and not authed:
                        authed = True
                        challenge = r.headers.get("WWW-Authenticate", "")
                        r.read()
                        self._auth.pop(repository, None)
                        self._authorize(repository, challenge)
                        continue
                    if r.status_code in _RETRY_STATUS and attempt < self.options.retries:
                        retry_after = r.headers.get("Retry-After", "")
                        delay = float(retry_after) if retry_after.isdigit() else self.options.backoff * (2**attempt)
                        r.read()
                        attempt += 1
                        time.sleep(min(delay, 30.0))
                        continue
                    yield r
                    return
            except (httpx.TransportError, httpx.DecodingError) as e:
                if attempt < self.options.retries:
                    attempt += 1
                    time.sleep(self.options.backoff * (2**attempt))
                    continue
                raise RegistryError(url, str(e) or type(e).__name__, transient=True) from None

    @staticmethod
    def _error(url: str, r: httpx.Response) -> RegistryError:
        detail = ""
        with contextlib.suppress(Exception):
            errs = r.json().get("errors") or []
            if errs:
                detail = f": {errs[0].get('code', '')} {errs[0].get('message', '')}".rstrip()
        if r.status_code == 401:
            return RegistryError(url, f"unauthorized (HTTP 401){detail}", status=401)
        if r.status_code == 404:
            return RegistryError(url, f"not found (HTTP 404){detail}", status=404)
        return RegistryError(url, f"HTTP {r.status_code}{detail}", status=r.status_code,
                             transient=r.status_code in _RETRY_STATUS)

    # --- manifests -------------------------------------------------------------------------

    def head_manifest(self, ref: DockerReference) -> str | None:
        """The digest the registry reports for a tag (``Docker-Content-Digest``), without a body."""
        url = self._url(ref.repository, "manifests", ref.reference)
        with self._send("HEAD", url, ref.repository, {"Accept": MANIFEST_ACCEPT}) as r:
            if r.status_code != 200:
                raise self._error(url, r)
            digest: str | None = r.headers.get("Docker-Content-Digest")
            return digest

    def get_manifest(self, repository: str, reference: str) -> Fetched:
        """GET a manifest or index by tag or digest, bounded and digest-checked.

        Raises:
            RegistryError: for HTTP errors, a body over 4 MiB, or a digest that does not match.
        """
        url = self._url(repository, "manifests", reference)
        with self._send("GET", url, repository, {"Accept": MANIFEST_ACCEPT}) as r:
            data, media_type = self._document(url, r, "manifest")
            claimed = r.headers.get("Docker-Content-Digest")
        digest = digest_of(data)
        expected = reference if reference.startswith("sha256:") else claimed
        if expected and expected != digest:
            raise RegistryError(url, f"manifest digest mismatch: expected {expected}, got {digest}")
        return Fetched(data, media_type, digest)

    def get_referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> Fetched | None:
        """The referrers API (distribution spec 1.1, ``GET /v2/NAME/referrers/DIGEST``): an index.

        Returns ``None`` when the registry has no such API (404: distribution 2.8 and older),
        so the caller falls back to the referrers tag schema. The body is bounded as a manifest.

        Raises:
            RegistryError: for other HTTP errors or a body over 4 MiB.
        """
        url = self._url(repository, "referrers", digest)
        if artifact_type:
            url += "?" + str(httpx.QueryParams({"artifactType": artifact_type}))
        with self._send("GET", url, repository, {"Accept": OCI_INDEX}) as r:
            if r.status_code == 404:
                r.read()
                return None
            data, media_type = self._document(url, r, "referrers index")
        return Fetched(data, media_type, digest_of(data))

    def _document(self, url: str, r: httpx.Response, what: str) -> tuple[bytes, str | None]:
        """A 200 response's JSON document, at most 4 MiB, and its media type."""
        if r.status_code != 200:
            r.read()
            raise self._error(url, r)
        buf = bytearray()
        for chunk in r.iter_bytes():
            buf += chunk
            if len(buf) > MAX_MANIFEST_SIZE:
                raise RegistryError(url, f"{what} larger than {MAX_MANIFEST_SIZE} bytes")
        return bytes(buf), (r.headers.get("Content-Type") or "").split(";")[0].strip() or None

    # --- blobs -----------------------------------------------------------------------------

    def get_blob_bytes(self, repository: str, desc: Descriptor) -> bytes:
        """A small blob (a config) in memory, bounded by and checked against its descriptor."""
        url = self._url(repository, "blobs", desc.digest)
        with self._send("GET", url, repository, {}) as r:
            if r.status_code != 200:
                r.read()
                raise self._error(url, r)
            buf = bytearray()
            for chunk in r.iter_bytes():
                buf += chunk
                if len(buf) > desc.size:
                    raise RegistryError(url, f"blob larger than its declared size {desc.size}")
        data = bytes(buf)
        self._count(desc.digest, len(data))
        _check_blob(url, desc, len(data), digest_of(data))
        return data

    def _count(self, digest: str, n: int) -> None:
        self.stats.count(digest, n)

    def get_range(self, repository: str, desc: Descriptor, start: int, end: int, sink: RangeSink) -> bool:
        """Stream bytes ``[start, end)`` of a blob to ``sink(offset, chunk)`` with one ``Range`` request.

        Returns false, having read nothing, when the registry ignores ``Range`` (answers 200 with
        the whole blob): the caller falls back to :meth:`fetch_blob`.

        Raises:
            RegistryError: HTTP errors, a ``Content-Range`` other than the one asked for, a body
                longer or shorter than the range.
        """
        if not 0 <= start < end <= desc.size:
            raise RegistryError(desc.digest, f"range {start}-{end} is outside the blob's {desc.size} bytes")
        url = self._url(repository, "blobs", desc.digest)
        with self._send("GET", url, repository, {"Range": f"bytes={start}-{end - 1}"}) as r:
            if r.status_code == 200:
                return False
            if r.status_code != 206:
                r.read()
                raise self._error(url, r)
            m = _CONTENT_RANGE.fullmatch(r.headers.get("Content-Range", "").strip())
            if m is None or int(m.group(1)) != start or int(m.group(2)) != end - 1:
                raise RegistryError(url, f"asked for bytes {start}-{end - 1}, got "
                                         f"Content-Range {r.headers.get('Content-Range')!r}")
            pos = start
            try:
                for chunk in r.iter_raw():
                    if pos + len(chunk) > end:
                        raise RegistryError(url, f"range {start}-{end - 1}: body longer than the range")
                    sink(pos, chunk)
                    pos += len(chunk)
                    self._count(desc.digest, len(chunk))
            except httpx.HTTPError as e:
                raise RegistryError(url, f"range {start}-{end - 1}: {e}", transient=True) from None
            if pos != end:
                raise RegistryError(url, f"range {start}-{end - 1} cut off at {pos}", transient=True)
        return True

    def fetch_blob(self, repository: str, desc: Descriptor, dest: Path, on_bytes: BytesFn | None = None) -> None:
        """Download a blob to ``dest``, resuming ``dest.partial`` with ``Range``; verified.

        ``on_bytes`` is called after each chunk with the running total (an exception it raises
        stops the download, keeping the partial file for a resume).

        Raises:
            RegistryError: HTTP errors, a body larger or smaller than declared, a wrong digest
                (the partial file is then removed so the next try starts over).
        """
        url = self._url(repository, "blobs", desc.digest)
        partial = dest.with_name(dest.name + ".partial")
        have = partial.stat().st_size if partial.exists() else 0
        if have > desc.size:
            partial.unlink()
            have = 0
        hasher = hashlib.sha256()
        if have:
            with open(partial, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    hasher.update(chunk)
        headers = {"Range": f"bytes={have}-"} if have and have < desc.size else {}
        if have < desc.size or desc.size == 0:
            with self._send("GET", url, repository, headers) as r:
                resumed = False
                if r.status_code == 206 and have:
                    resumed = True
                    mode = "ab"
                elif r.status_code == 200:
                    have, hasher, mode = 0, hashlib.sha256(), "wb"
                else:
                    r.read()
                    raise self._error(url, r)
                with open(partial, mode) as out:
                    for chunk in r.iter_raw():
                        if have + len(chunk) > desc.size:
                            raise RegistryError(url, f"blob larger than its declared size {desc.size}")
                        out.write(chunk)
                        hasher.update(chunk)
                        have += len(chunk)
                        self._count(desc.digest, len(chunk))
                        if on_bytes is not None:
                            on_bytes(have)
                    out.flush()
                    os.fsync(out.fileno())
            self.stats.blob_done(resumed=resumed)
        else:
            self.stats.blob_done()
        got = "sha256:" + hasher.hexdigest()
        if have != desc.size:
            if have < desc.size:
                raise RegistryError(url, f"blob truncated at {have} of {desc.size} bytes (resumable)", transient=True)
        if got != desc.digest:
            partial.unlink(missing_ok=True)
        _check_blob(url, desc, have, got)
        os.rename(partial, dest)


def _check_blob(url: str, desc: Descriptor, size: int, digest: str) -> None:
    if size != desc.size:
        raise RegistryError(url, f"blob size {size} does not match its declared size {desc.size}")
    if digest != desc.digest:
        raise RegistryError(url, f"blob digest mismatch: expected {desc.digest}, got {digest}")
