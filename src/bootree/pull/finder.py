"""Finding collection refs on configured remotes (``find-remotes --finders=config``), then pulling them.

Layer: pull. A collection ref ``(COLLECTION, REF)`` names a ref globally, so any remote that
carries the collection may serve it. ostree's *config finder* looks at every configured remote
whose ``collection-id`` is one of the wanted collections, reads its summary (checked by the
remote's own signature policy, through the summary cache as a pull would) and reports which of
the wanted refs it lists, and at which commit. :func:`choose_sources` then picks, for each ref,
the remote whose summary has the newest commit (by the summary's commit timestamp), so that an
outdated mirror is not preferred over the origin; :func:`pull_found` pulls each ref from there,
pinned to the commit the summary named.

Only the config finder exists: ostree's mount finder (removable drives) and its LAN finder
(Avahi) are not implemented.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bootree.errors import BootreeError
from bootree.format.checksum import Checksum
from bootree.format.summary import Summary, SummaryRef
from bootree.pull.options import PullConfig, PullResult
from bootree.pull.puller import pull
from bootree.pull.remote import Remote, list_remotes
from bootree.pull.session import fetch_remote_summary
from bootree.pull.summarycache import SummaryCache
from bootree.pull.trust import policy_for_remote
from bootree.repo import Repo
from bootree.repo.collections import CollectionRef

__all__ = ["FinderResult", "FoundCommit", "PullOutcome", "choose_sources", "find_remotes", "pull_found", "summary_refs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FoundCommit:
    """Where a remote's summary puts a wanted ref: the commit and its timestamp (if listed)."""

    checksum: Checksum
    timestamp: int | None


@dataclass(frozen=True)
class FinderResult:
    """One remote that has at least one wanted ref, and what it has of each (None: not there)."""

    remote: Remote
    refs: dict[CollectionRef, FoundCommit | None]
    #: ``ostree.summary.last-modified`` of its summary.
    last_modified: int | None = None
    #: ostree's priority of the finder that found it (the config finder's is 100).
    priority: int = 100

    @property
    def keyring(self) -> str:
        """The remote's keyring file name, as ostree reports it."""
        return f"{self.remote.name}.trustedkeys.gpg"


def summary_refs(summary: Summary) -> dict[CollectionRef, SummaryRef]:
    """Every collection ref of a summary: its main refs (under ``ostree.summary.collection-id``,
    if it has one) and those of its ``ostree.summary.collection-map``."""
    out: dict[CollectionRef, SummaryRef] = {}
    main = summary.collection_id
    if main:
        for entry in summary.refs:
            out[CollectionRef(main, entry.name)] = entry
    for cid, entries in summary.collection_map.items():
        for entry in entries:
            out.setdefault(CollectionRef(cid, entry.name), entry)
    return out


def find_remotes(repo: Repo, wanted: Sequence[CollectionRef], config: PullConfig | None = None) -> list[FinderResult]:
    """The configured remotes that serve any of ``wanted``, in config order.

    A remote whose summary cannot be fetched or verified is skipped (logged), as ostree's
    finder skips it: the other remotes may still serve the refs.
    """
    collections = {w.collection_id for w in wanted}
    results: list[FinderResult] = []
    for remote in list_remotes(repo.config):
        if remote.collection_id not in collections or not remote.url:
            continue
        policy = policy_for_remote(repo.path, remote)
        try:
            summary = fetch_remote_summary(
                remote, config, policy=policy, cache=SummaryCache.for_repo(repo.path)
            ).summary
        except BootreeError as e:
            log.warning("remote %s skipped: %s", remote.name, e)
            continue
        finally:
            policy.close()
        listed = summary_refs(summary)
        found: dict[CollectionRef, FoundCommit | None] = {}
        for w in wanted:
            entry = listed.get(w)
            found[w] = FoundCommit(entry.commit, entry.timestamp) if entry is not None else None
        if any(v is not None for v in found.values()):
            results.append(FinderResult(remote, found, summary.last_modified))
    return results


def choose_sources(results: Sequence[FinderResult], wanted: Sequence[CollectionRef]) -> dict[str, dict[str, Checksum]]:
    """For each wanted ref found anywhere, the remote to pull it from: the newest commit wins
    (ties: the first result). Returns ``{remote name: {ref: commit}}`` in result order."""
    chosen: dict[CollectionRef, tuple[int, FoundCommit]] = {}
    for i, res in enumerate(results):
        for w in wanted:
            hit = res.refs.get(w)
            if hit is None:
                continue
            best = chosen.get(w)
            if best is None or (hit.timestamp or 0) > (best[1].timestamp or 0):
                chosen[w] = (i, hit)
    out: dict[str, dict[str, Checksum]] = {}
    for w, (i, hit) in sorted(chosen.items(), key=lambda kv: kv[1][0]):
        out.setdefault(results[i].remote.name, {})[w.ref] = hit.checksum
    return out


@dataclass
class PullOutcome:
    """What :func:`pull_found` did: the refs pulled and the errors of the remotes that failed."""

    pulled: list[str] = field(default_factory=list)
    failed: dict[str, BootreeError] = field(default_factory=dict)
    results: list[PullResult] = field(default_factory=list)


def pull_found(
    repo: Repo,
    results: Sequence[FinderResult],
    wanted: Sequence[CollectionRef],
    *,
    mirror: bool = False,
    config: PullConfig | None = None,
    cache_dir: Path | None = None,
) -> PullOutcome:
    """Pull every found ref from its chosen remote (:func:`choose_sources`), pinned to the
    commit its summary named; a remote that fails does not stop the others."""
    by_name = {r.remote.name: r.remote for r in results}
    outcome = PullOutcome()
    for name, refs in choose_sources(results, wanted).items():
        try:
            res = pull(
                repo, by_name[name], [f"{ref}@{csum}" for ref, csum in refs.items()],
                config=config, mirror=mirror, cache_dir=cache_dir,
            )
        except BootreeError as e:
            outcome.failed[name] = e
            continue
        outcome.pulled.extend(refs)
        outcome.results.append(res)
    return outcome
