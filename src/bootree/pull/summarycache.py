"""The client's cache of each remote's summary: ``tmp/cache/summaries/REMOTE`` and ``REMOTE.sig``.

Layer: pull. A summary is the largest control file a pull fetches, and it is fetched on every
pull; its signature (``summary.sig``) is small and changes whenever the summary does. So, as
ostree does, a client keeps the last summary it fetched beside its signature, fetches only
``summary.sig`` first, and uses the cached summary when the server's signature is byte-equal to
the cached one. Only a signed summary is cached (an unsigned one has no cheap change marker).

The cache is never trusted more than the network: a cached summary is verified exactly as a
downloaded one (:meth:`~bootree.pull.session.RemoteSession.summary`), and one that fails is
dropped and fetched again (or, with ``OSTREE_REPO_TEST_ERROR=invalid-cache``, reported, as
ostree's tests demand). The cache is written only after verification succeeded, summary first
and signature last, with the old signature removed before: a crash in between leaves a summary
without a signature, which is never used.

The directory is ``REPO/tmp/cache`` (``pull --cache-dir=DIR`` chooses another); as with ostree,
``OSTREE_SKIP_CACHE`` in the environment turns the repository's default cache off (its test
suite sets it everywhere except in the tests of the cache). ``prune`` removes the files of
remotes that no longer exist (:meth:`SummaryCache.prune`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.pull.remote import list_remotes
from bootree.repo import Repo

__all__ = ["SKIP_ENV", "SummaryCache", "prune_summary_cache"]

log = logging.getLogger(__name__)

#: ostree's switch for its test suite: no default cache directory.
SKIP_ENV = "OSTREE_SKIP_CACHE"
_SUBDIR = "summaries"
_SIG = ".sig"


def _usable_name(remote: str) -> bool:
    """A remote name that is safe as one file name (a URL-only pull has no cache entry)."""
    return bool(remote) and "/" not in remote and not remote.startswith(".") and "\0" not in remote


@dataclass(frozen=True, slots=True)
class SummaryCache:
    """The summary cache under ``directory`` (the files live in ``directory/summaries/``)."""

    directory: Path

    @classmethod
    def for_repo(cls, repo_path: Path, cache_dir: Path | None = None) -> SummaryCache | None:
        """The cache a pull into ``repo_path`` uses: ``cache_dir``, else ``REPO/tmp/cache``.

        None when there is no explicit ``cache_dir`` and ``$OSTREE_SKIP_CACHE`` is set.
        """
        if cache_dir is not None:
            return cls(cache_dir)
        if os.environ.get(SKIP_ENV):
            return None
        return cls(repo_path / "tmp" / "cache")

    @property
    def path(self) -> Path:
        """The directory of the cached files."""
        return self.directory / _SUBDIR

    def load(self, remote: str, signature: bytes) -> bytes | None:
        """The cached summary of ``remote`` if its cached signature equals ``signature``.

        A cached signature without its summary is stale: it is removed.
        """
        if not _usable_name(remote):
            return None
        sig_path = self.path / f"{remote}{_SIG}"
        try:
            cached_sig = sig_path.read_bytes()
        except OSError:
            return None
        if cached_sig != signature:
            return None
        try:
            return (self.path / remote).read_bytes()
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                sig_path.unlink()
            return None
        except OSError as e:
            log.warning("summary cache %s unreadable: %s", self.path / remote, e)
            return None

    def store(self, remote: str, summary: bytes, signature: bytes) -> None:
        """Keep ``summary`` and ``signature`` (both verified) as the cache of ``remote``.

        A cache that cannot be written (read-only repository, full disk) is logged and
        skipped: the pull it belongs to succeeded and the next one fetches the summary again.
        """
        if not _usable_name(remote):
            return
        sig_path = self.path / f"{remote}{_SIG}"
        try:
            _fs.makedirs(self.path)
            with contextlib.suppress(FileNotFoundError):
                sig_path.unlink()  # never a new summary beside the old signature
            _fs.write_atomic(self.path / remote, summary, fsync=False)
            _fs.write_atomic(sig_path, signature, fsync=False)
        except OSError as e:
            log.warning("summary of %s not cached in %s: %s", remote, self.path, e)

    def prune(self, remotes: Iterable[str]) -> list[str]:
        """Remove the cached files of remotes not in ``remotes``; the names removed."""
        keep = set(remotes)
        removed: list[str] = []
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return removed
        for name in names:
            remote = name.removesuffix(_SIG) if len(name) > len(_SIG) else name
            if remote in keep:
                continue
            try:
                (self.path / name).unlink()
            except IsADirectoryError:
                continue
            except FileNotFoundError:
                pass
            removed.append(name)
        return removed


def prune_summary_cache(repo: Repo) -> list[str]:
    """``prune``'s part: drop the repository's cached summaries of remotes it no longer has."""
    cache = SummaryCache.for_repo(repo.path)
    return cache.prune(r.name for r in list_remotes(repo.config)) if cache is not None else []
