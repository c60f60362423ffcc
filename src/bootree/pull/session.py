"""A remote session: one remote's control files (config, summary and signature, refs) over a fetcher.

Layer: pull. Everything a pull, ``remote refs`` or ``remote summary`` learns about a remote
before fetching objects goes through :class:`RemoteSession`: it owns the fetcher, bounds every
download by :class:`~bootree.pull.options.PullConfig`, keeps the summary's bytes and its
signature bytes (``summary.sig``) together for the verify step, and turns bad content into
:class:`~bootree.errors.RemoteError` (a corrupt summary or config is the remote's fault, not a
format bug of ours). Download failures stay :class:`~bootree.errors.FetchError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bootree.errors import FormatError, KeyFileError, NotFoundError, RemoteError, VerificationError
from bootree.format.checksum import Checksum, parse_checksum
from bootree.format.keyfile import KeyFile
from bootree.format.summary import Summary
from bootree.pull.mirrors import METALINK, MIRRORLIST, resolve_metalink, resolve_mirrorlist
from bootree.pull.options import PullConfig
from bootree.pull.remote import Remote
from bootree.pull.summarycache import SummaryCache
from bootree.pull.verify import SignaturePolicy, policy_for_remote
from bootree.repo import testhooks
from bootree.transport import Fetcher, join_url, open_fetcher
from bootree.transport.mirrors import MirrorFetcher

__all__ = ["RemoteSession", "RemoteSummary", "fetch_remote_summary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteSummary:
    """A remote's summary, parsed, with the exact bytes and ``summary.sig`` (None if absent)."""

    summary: Summary
    data: bytes
    signature: bytes | None


class RemoteSession:
    """The control files of one remote, fetched once each, with typed errors.

    ``name`` is the remote's name for messages (the URL if it has none). The session owns
    ``fetcher`` when it opened it (:meth:`open`), and closes it in :meth:`close`.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        url: str,
        *,
        config: PullConfig | None = None,
        content_url: str | None = None,
        name: str | None = None,
        policy: SignaturePolicy | None = None,
        owns_fetcher: bool = False,
        cache: SummaryCache | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.url = url
        self.content_url = content_url or url
        self.config = config or PullConfig()
        self.name = name or url
        self.policy = policy
        #: Where the last verified signed summary is kept (None: no cache; never for file://).
        self.cache = cache if not url.startswith("file:") else None
        #: Bytes of control files received.
        self.bytes = 0
        #: The remote repository's ``config``, once :meth:`check_archive` has read it.
        self.remote_config: KeyFile | None = None
        self._owns = owns_fetcher
        self._summary: RemoteSummary | None = None
        self._summary_fetched = False
        #: The summary a metalink named (already checked against the metalink's hash).
        self._preloaded_summary: bytes | None = None

    @classmethod
    def open(
        cls,
        remote: Remote,
        config: PullConfig | None = None,
        fetcher: Fetcher | None = None,
        *,
        policy: SignaturePolicy | None = None,
        cache: SummaryCache | None = None,
    ) -> RemoteSession:
        """A session for a configured remote, with its network and memory keys applied.

        ``policy`` checks the summary (default: :func:`~bootree.pull.verify.policy_for_remote`,
        which refuses what it cannot verify; the puller passes the remote's real policy).
        ``cache`` keeps the remote's signed summary between sessions (:mod:`bootree.pull.summarycache`).

        Raises:
            RemoteError: the remote has no URL.
            KeyFileError: a malformed remote key.
            FetchError: an unsupported URL scheme.
        """
        if not remote.url:
            raise RemoteError(f"remote {remote.name!r} has no url")
        cfg = (config or PullConfig()).for_remote(remote.get, remote.name)
        own = fetcher is None
        url = remote.url
        f = fetcher or open_fetcher(_strip_indirection(url), remote.fetch_config(cfg.fetch))
        try:
            # metalink= and mirrorlist= URLs (bootree.pull.mirrors) resolve to real ones first.
            preloaded: bytes | None = None
            groups: list[list[str]] = []
            if url.startswith(METALINK):
                url, preloaded = resolve_metalink(f, url.removeprefix(METALINK), cfg.max_summary_size)
            elif url.startswith(MIRRORLIST):
                groups.append(resolve_mirrorlist(f, url.removeprefix(MIRRORLIST)))
                url = groups[-1][0]
            content_url = remote.get("contenturl") or url
            if content_url.startswith(MIRRORLIST):
                groups.append(resolve_mirrorlist(f, content_url.removeprefix(MIRRORLIST)))
                content_url = groups[-1][0]
        except BaseException:
            if own:
                f.close()
            raise
        if groups:
            f = MirrorFetcher(f, groups)
        session = cls(
            f,
            url,
            config=cfg,
            content_url=content_url,
            name=remote.name,
            policy=policy if policy is not None else policy_for_remote(remote),
            owns_fetcher=own,
            cache=cache,
        )
        session._preloaded_summary = preloaded
        return session

    def close(self) -> None:
        """Close the fetcher if this session opened it."""
        if self._owns:
            self.fetcher.close()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- control files ------------------------------------------------------------------------

    def fetch_optional(self, path: str, max_length: int) -> bytes | None:
        """A file under the remote's URL, or None if it does not exist.

        Raises:
            FetchError: any other failure (too large, network).
        """
        try:
            data = self.fetcher.fetch(join_url(self.url, path), max_length=max_length)
        except NotFoundError:
            return None
        self.bytes += len(data)
        return data

    def check_archive(self) -> str | None:
        """The remote must be an archive repository (only those serve ``.filez`` objects), or,
        as with ostree, a repository of any mode on a ``file://`` URL, read as a local one.

        Returns:
            The local path of a non-archive ``file://`` remote (``None`` for an archive).

        Raises:
            RemoteError: no ``config``, an unreadable one, or another mode over the network.
        """
        data = self.fetch_optional("config", self.config.max_small_file_size)
        if data is None:
            raise RemoteError(f"{self.url} has no 'config': not an ostree repository")
        try:
            kf = KeyFile.from_text(data.decode("utf-8"))
        except (UnicodeDecodeError, KeyFileError) as e:
            raise RemoteError(f"{self.url}/config is not a valid repository config: {e}") from e
        self.remote_config = kf
        mode = kf.get("core", "mode", "bare") or "bare"
        if mode in ("archive", "archive-z2"):
            return None
        if self.url.startswith("file://"):
            from urllib.parse import unquote, urlsplit

            return unquote(urlsplit(self.url).path)
        raise RemoteError(f"remote repository at {self.url} has mode {mode!r}; only archive can be pulled")

    def collection_id(self, remote: Remote) -> str | None:
        """The collection ID commits from here must be bound to (ostree's rule): a ``file://``
        remote's own ``core.collection-id`` (after :meth:`check_archive`), else the remote's
        configured ``collection-id``. Empty means none."""
        if self.url.startswith("file:") and self.remote_config is not None:
            return self.remote_config.get("core", "collection-id") or None
        return remote.collection_id or None

    def summary(self) -> RemoteSummary | None:
        """The remote's summary and signature (fetched once), or None if it publishes none.

        As ostree: ``summary.sig`` first; when the cache holds a summary under the same
        signature, that one is used instead of downloading it. The signature policy, if the
        session has one, checks the summary (cached or not) before it is returned; a cached
        one that fails is fetched again (``OSTREE_REPO_TEST_ERROR=invalid-cache``: reported).
        A downloaded signed summary that passes is cached.

        Raises:
            RemoteError: a summary that does not parse.
            VerificationError: the policy refuses it.
            InjectedTestError: the ``invalid-cache`` test hook, on a cached summary that fails.
            FetchError: a failed download (e.g. over ``max_summary_size``).
        """
        if self._summary_fetched:
            return self._summary
        self._summary_fetched = True
        sig = self.fetch_optional("summary.sig", self.config.max_small_file_size)
        cache = self.cache if sig is not None else None
        cached = cache.load(self.name, sig) if cache is not None and sig is not None else None
        if cached is not None:
            try:
                self._summary = self._checked(cached, sig)
                return self._summary
            except (RemoteError, VerificationError) as e:
                testhooks.check("invalid-cache")
                log.info("cached summary of %s is invalid (%s); fetching it again", self.name, e)
        data = self._preloaded_summary  # a metalink's summary, already checked against its hash
        if data is None:
            data = self.fetch_optional("summary", self.config.max_summary_size)
        else:
            self.bytes += len(data)
        if data is None:
            return None
        self._summary = self._checked(data, sig)
        if cache is not None and sig is not None:
            cache.store(self.name, data, sig)
        return self._summary

    def _checked(self, data: bytes, sig: bytes | None) -> RemoteSummary:
        try:
            summary = Summary.from_bytes(data)
        except FormatError as e:
            raise RemoteError(f"{self.url}/summary is corrupt: {e}") from e
        if self.policy is not None:
            self.policy.check_summary(data, sig)
        return RemoteSummary(summary, data, sig)

    def require_summary(self) -> RemoteSummary:
        """:meth:`summary`, for callers that cannot do without one.

        Raises:
            RemoteError: the remote publishes no summary (or any error of :meth:`summary`).
        """
        found = self.summary()
        if found is None:
            raise RemoteError(f"remote {self.name!r} publishes no summary", hint="run 'summary -u' on the server")
        return found

    def ref_file(self, ref: str) -> Checksum | None:
        """The commit in the remote's ``refs/heads/REF``, or None if there is no such file.

        Raises:
            RemoteError: a ref file that does not hold a checksum.
        """
        data = self.fetch_optional(f"refs/heads/{ref}", self.config.max_small_file_size)
        if data is None:
            return None
        try:
            return parse_checksum(data.decode("ascii").strip())
        except (UnicodeDecodeError, FormatError) as e:
            raise RemoteError(f"{self.url}/refs/heads/{ref} is not a checksum") from e


def _strip_indirection(url: str) -> str:
    """The URL to choose a fetcher by: a ``metalink=``/``mirrorlist=`` URL's own."""
    for prefix in (METALINK, MIRRORLIST):
        if url.startswith(prefix):
            return url.removeprefix(prefix)
    return url


def fetch_remote_summary(
    remote: Remote,
    config: PullConfig | None = None,
    *,
    policy: SignaturePolicy | None = None,
    cache: SummaryCache | None = None,
) -> RemoteSummary:
    """A configured remote's summary and signature, as ``remote refs`` and ``remote summary`` show it.

    Raises:
        RemoteError: no URL, no summary, or a corrupt one.
        VerificationError: ``policy`` refuses the summary.
        FetchError: a failed download.
    """
    with RemoteSession.open(remote, config, policy=policy, cache=cache) as session:
        return session.require_summary()
