"""Pull orchestration: a remote (or a local repository) -> verified objects -> refs.

Layer: pull. This module only wires the seams together; each does one thing:

1. :class:`~bootree.pull.session.RemoteSession` — the remote's control files: its ``config``
   (must be an archive repository), ``summary`` with ``summary.sig``, ``refs/heads/REF``;
2. :func:`~bootree.pull.plan.resolve_targets` — refs and pins to commits (pure);
3. :class:`~bootree.pull.verify.Verifier` — checksums, ref binding, the signature policy (pure);
4. :class:`~bootree.pull.engine.ObjectEngine` — the threaded fetch -> verify -> write walk over an
   :class:`~bootree.pull.sources.ObjectSource` (:class:`~bootree.pull.sources.HttpSource` for a
   remote, :class:`~bootree.pull.sources.LocalRepoSource` for ``pull-local``), after any
   :class:`~bootree.pull.engine.PullStage` (static deltas plug in there);
5. here: one transaction around it all. On success the partial markers are cleared, refs move and
   the transaction commits; on failure the verified objects are published (a rerun resumes
   without refetching them), refs stay untouched and the error propagates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bootree.errors import BootreeError, DowngradeError, RemoteError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.objects import Commit
from bootree.pull import trust
from bootree.pull.deltas import DeltaStage, plan_deltas
from bootree.pull.engine import ObjectEngine, Progress, PullStage, StageContext
from bootree.pull.heap import bound_heap
from bootree.pull.options import PullConfig, PullEvent, PullOptions, PullPhase, PullResult, StaticDeltas
from bootree.pull.plan import PullTarget, normalize_subpaths, parse_pull_refs, resolve_targets
from bootree.pull.remote import Remote
from bootree.pull.session import RemoteSession, RemoteSummary
from bootree.pull.sources import CachedSource, HttpSource, LocalRepoSource, ObjectSource
from bootree.pull.summarycache import SummaryCache
from bootree.pull.verify import BindingCheck, NoSignatures, Verifier, check_bareuseronly
from bootree.repo import Repo, RepoMode
from bootree.repo.collections import CollectionRef, set_collection_ref, verify_bindings_of
from bootree.repo.summary import write_summary
from bootree.transport import Fetcher
from bootree.transport.file import FileFetcher

__all__ = ["PullConfig", "PullEvent", "PullJob", "PullOptions", "PullPhase", "PullResult", "pull", "pull_local", "run_pull"]

log = logging.getLogger(__name__)


@dataclass
class PullJob:
    """One pull, fully decided: where objects come from, which commits, how refs are named."""

    repo: Repo
    source: ObjectSource
    #: Each target and the commit it resolved to.
    resolved: dict[PullTarget, Checksum]
    #: The local ref a remote ref lands in (``origin:REF``, or ``REF`` for a mirror).
    local_ref: Callable[[str], str]
    verifier: Verifier
    options: PullOptions = field(default_factory=PullOptions)
    config: PullConfig = field(default_factory=PullConfig)
    #: A mirror's summary (and signature), written into the repository after the pull.
    mirror_summary: RemoteSummary | None = None
    #: Steps run before the object walk, inside the transaction (static deltas).
    stages: Sequence[PullStage] = ()
    #: Bytes received before the walk (control files), for the result.
    control_bytes: Callable[[], int] = lambda: 0
    #: Let a ref move to an older commit (otherwise :func:`check_downgrade` refuses it).
    allow_downgrade: bool = True
    #: Local refs the operator pinned to a commit by checksum (``REF@COMMIT``): an explicit
    #: choice, so no downgrade check (rpm-ostree's ``deploy COMMIT`` allows it too). The commit
    #: is still verified like any other: a server cannot make a client pick it.
    pinned_refs: frozenset[str] = frozenset()
    #: Timestamps of the commits the pull fetched (filled by the verify step's commit hook).
    commit_times: dict[Checksum, int] = field(default_factory=dict)
    #: A mirror pull from a remote with a collection ID: its refs are that collection's
    #: (``refs/mirrors/COLLECTION/REF``, or branches if it is the repository's own), as ostree's.
    mirror_collection: str | None = None


def run_pull(job: PullJob, progress: Progress | None = None) -> PullResult:
    """Fetch everything ``job`` needs through one transaction, then move its refs.

    Raises:
        the errors of the source, the verifier and the transaction (see :func:`pull`).
    """
    start = time.monotonic()
    repo, opts = job.repo, job.options
    bound_heap()
    engine = ObjectEngine(
        repo,
        job.source,
        job.verifier,
        job.config,
        metadata_only=opts.commit_metadata_only,
        dry_run=opts.dry_run,
        progress=progress,
        subpaths=opts.subpaths,
    )
    commits = {csum: opts.depth for csum in job.resolved.values()}
    refs_out: list[tuple[str, Checksum]] = [
        (job.local_ref(t.ref), c) for t, c in job.resolved.items() if t.ref is not None
    ]
    if opts.dry_run:
        plan = engine.run(None, commits)
    else:
        with repo.transaction() as txn:
            try:
                for stage in job.stages:
                    stage.run(StageContext(repo, txn, commits, job.verifier, job.config))
                plan = engine.run(txn, commits)
            except BaseException:
                # Keep what was verified, so a rerun resumes; refs stay as they were.
                try:
                    txn.checkpoint()
                except (BootreeError, OSError) as e:  # disk trouble on top of the first error
                    log.warning("could not keep partial pull: %s", e)
                raise
            log.info("all objects verified and staged after %.2f s; publishing", time.monotonic() - start)
            if not opts.commit_metadata_only:
                for c in plan.walked_commits:
                    txn.clear_partial(c)
            for name, csum in refs_out:
                if not job.allow_downgrade and name not in job.pinned_refs:
                    check_downgrade(repo, name, csum, _timestamp(repo, job.commit_times, csum))
                if job.mirror_collection is None and repo.refs.get(name) != csum:
                    txn.set_ref(name, csum)
        collection = job.mirror_collection
        for name, csum in refs_out if collection is not None else ():
            # After the objects are published, as the transaction's own refs are.
            assert collection is not None
            set_collection_ref(repo.refs, repo.config, CollectionRef(collection, name), csum, fsync=repo.fsync)
        if job.mirror_summary is not None:
            write_summary(repo, job.mirror_summary.data, job.mirror_summary.signature)
    engine.emit(PullPhase.DONE, force=True)
    return PullResult(
        refs=tuple(refs_out),
        metadata_fetched=engine.metadata_fetched if not opts.dry_run else plan.fetch_metadata,
        content_fetched=engine.content_fetched if not opts.dry_run else plan.fetch_content,
        bytes_fetched=engine.bytes + job.control_bytes(),
        requests=job.source.requests,
        seconds=time.monotonic() - start,
        dry_run=opts.dry_run,
        content_bytes=engine.content_bytes,
        metadata_local=engine.metadata_local,
        content_local=engine.content_local,
    )


def check_downgrade(repo: Repo, ref: str, csum: Checksum, timestamp: int) -> None:
    """Refuse to move ``ref`` to a commit older than the one it points at.

    A validly signed old commit replayed by a mirror is still old: signatures alone do not stop
    a rollback to a vulnerable version (rpm-ostree's ``--allow-downgrade`` check).

    Raises:
        DowngradeError: ``timestamp`` is older than the current commit's.
    """
    current = repo.refs.get(ref)
    if current is None or current == csum or not repo.has_object(ObjectType.COMMIT, current):
        return
    current_time = repo.read_commit(current).timestamp
    if timestamp < current_time:
        raise DowngradeError(f"ref {ref}", csum, timestamp, current, current_time)


def _timestamp(repo: Repo, seen: dict[Checksum, int], csum: Checksum) -> int:
    """A commit's timestamp: from the pull (commits it fetched), else from the repository."""
    if csum in seen:
        return seen[csum]
    return repo.read_commit(csum).timestamp


def _progress(callback: Callable[[PullEvent], None] | None) -> Progress:
    if callback is None:
        return Progress(None)
    return Progress(lambda phase, fetched, requested, nbytes: callback(PullEvent(phase, fetched, requested, nbytes)))


def _refs_of(resolved: dict[PullTarget, Checksum]) -> dict[Checksum, list[str]]:
    out: dict[Checksum, list[str]] = {}
    for t, csum in resolved.items():
        if t.ref is not None:
            out.setdefault(csum, []).append(t.ref)
    return out


def _bindings(collection_id: str | None, enabled: bool) -> BindingCheck:
    """The binding check of a pull: ostree's (ref, and collection if the source has one), or none."""
    if not enabled:
        return lambda csum, commit, ref: None
    return lambda csum, commit, ref: verify_bindings_of(commit, collection_id or None, ref)


def _resolve_remote(
    session: RemoteSession, targets: list[PullTarget], mirror_all: bool
) -> tuple[dict[PullTarget, Checksum], RemoteSummary | None]:
    """Targets -> commits, from the summary if one is needed, else ``refs/heads/`` files."""
    found = session.summary() if mirror_all or any(t.commit is None for t in targets) else None
    if mirror_all:
        if found is None:
            raise RemoteError(f"{session.url} has no summary: name the refs to mirror")
        targets = [PullTarget(r.name) for r in found.summary.refs]
    ref_files: dict[str, Checksum] = {}
    if found is None:
        for t in targets:
            if t.commit is None and t.ref is not None:
                csum = session.ref_file(t.ref)
                if csum is not None:
                    ref_files[t.ref] = csum
    resolved = resolve_targets(targets, found.summary if found else None, ref_files)
    return resolved, found


def pull(
    repo: Repo,
    remote: Remote,
    refs: Sequence[str] = (),
    *,
    config: PullConfig | None = None,
    depth: int = 0,
    commit_metadata_only: bool = False,
    mirror: bool = False,
    dry_run: bool = False,
    progress: Callable[[PullEvent], None] | None = None,
    fetcher: Fetcher | None = None,
    stages: Sequence[PullStage] = (),
    policy: trust.TrustPolicy | None = None,
    allow_downgrade: bool = False,
    subpaths: Sequence[str] = (),
    localcache: Sequence[Path] = (),
    bareuseronly_files: bool = False,
    cache_dir: Path | None = None,
    verify_bindings: bool = True,
) -> PullResult:
    """Pull ``refs`` (``REF``, ``REF@COMMIT`` or ``COMMIT``) from ``remote`` into ``repo``.

    Without refs: all the remote's refs with ``mirror``, else the remote's ``branches=``.
    Refs land in ``refs/remotes/REMOTE/`` (``refs/heads/`` with ``mirror``).

    Signatures are checked as the remote's config asks (:mod:`bootree.pull.trust`; ``policy``
    overrides it): the summary before any of its refs is used, each commit before anything of
    its tree is fetched. A ref never moves to a commit older than the one it points at unless
    ``allow_downgrade``: checked from the (verified) summary before any object is requested,
    for each fetched commit before its tree, and for every ref before it moves.

    ``localcache`` (``--localcache-repo``): local repositories to take objects from before
    asking the remote (verified all the same).

    ``bareuseronly_files`` (``--bareuseronly-files``): refuse content objects a bare-user-only
    repository must not hold (setuid, setgid, world-writable), as ostree does.

    ``subpaths`` (``--subpath``): only those paths of each commit's tree (and the directories
    leading to them) are fetched, and the commits stay marked partial, as ostree does.

    Raises:
        VerificationError: no trusted key for a required signature engine.
        SignatureError: a summary or commit that does not satisfy the remote's signature policy.
        DowngradeError: a commit older than the ref's current one, without ``allow_downgrade``.
        SummaryExpired: a summary past its ``bootree.summary.expires``.
        RemoteError: no refs to pull, a remote that is not an archive repository, a bad summary.
        BindingError: a commit not bound to the ref (or collection) it is pulled as.
        RefNotFound: a ref the remote does not have.
        FetchError: a download that failed for good (NotFoundError for a missing object).
        ChecksumMismatch, CorruptObject: the server sent wrong bytes.
    """
    targets = parse_pull_refs(refs)
    mirror_all = mirror and not targets
    if not targets and not mirror_all:
        targets = parse_pull_refs(remote.branches)
        if not targets:
            raise RemoteError(f"no refs given and remote {remote.name!r} has no 'branches' configured")
    if not remote.url:
        raise RemoteError(f"remote {remote.name!r} has no url")
    # Fail closed, as ostree does when it cannot verify: a remote whose config asks for
    # signatures but trusts no key is refused before the first request.
    own_policy = policy is None
    signatures = policy if policy is not None else trust.policy_for_remote(repo.path, remote)
    try:
        signatures.check_start()
        cache = SummaryCache.for_repo(repo.path, cache_dir)
        return _pull_remote(repo, remote, targets, mirror, mirror_all, signatures, allow_downgrade, config,
                            fetcher, stages, localcache, bareuseronly_files,
                            PullOptions(depth, commit_metadata_only, dry_run, mirror_all, progress,
                                        normalize_subpaths(subpaths)),
                            cache, verify_bindings)
    finally:
        if own_policy:
            signatures.close()


def _pull_remote(
    repo: Repo,
    remote: Remote,
    targets: list[PullTarget],
    mirror: bool,
    mirror_all: bool,
    policy: trust.TrustPolicy,
    allow_downgrade: bool,
    config: PullConfig | None,
    fetcher: Fetcher | None,
    stages: Sequence[PullStage],
    localcache: Sequence[Path],
    bareuseronly_files: bool,
    options: PullOptions,
    cache: SummaryCache | None,
    verify_bindings: bool,
) -> PullResult:
    report = _progress(options.progress)
    report.emit(PullPhase.REFS, 0, 0, 0, force=True)
    local_ref: Callable[[str], str] = (lambda r: r) if mirror else (lambda r: f"{remote.name}:{r}")
    with RemoteSession.open(remote, config, fetcher, policy=policy, cache=cache) as session:
        local_path = session.check_archive()
        resolved, found = _resolve_remote(session, targets, mirror_all)
        refs_of = _refs_of(resolved)
        pinned = frozenset(local_ref(t.ref) for t in resolved if t.ref is not None and t.commit is not None)
        if not allow_downgrade and found is not None:
            # Refuse from the verified summary's timestamps, before any object is requested.
            for t, csum in resolved.items():
                entry = found.summary.ref(t.ref) if t.ref is not None and t.commit is None else None
                if t.ref is not None and entry is not None and entry.timestamp is not None:
                    check_downgrade(repo, local_ref(t.ref), csum, entry.timestamp)
        times: dict[Checksum, int] = {}

        def on_commit(csum: Checksum, commit: Commit) -> None:
            times[csum] = commit.timestamp
            if not allow_downgrade:  # before the commit's tree is requested
                for ref in refs_of.get(csum, ()):
                    if local_ref(ref) not in pinned:
                        check_downgrade(repo, local_ref(ref), csum, commit.timestamp)

        policy.commit_hook = on_commit
        if options.dry_run and session.config.static_deltas is StaticDeltas.REQUIRE:
            # As ostree: a dry run that requires deltas reports them from their superblocks only.
            start = time.monotonic()
            remote_summary = found or session.summary()
            plan = plan_deltas(
                repo, session.fetcher, session.url, {c: False for c in resolved.values()},
                summary=remote_summary.summary if remote_summary is not None else None,
            )
            refs_out = tuple((local_ref(t.ref), c) for t, c in resolved.items() if t.ref is not None)
            return PullResult(refs_out, 0, 0, session.bytes, 0, time.monotonic() - start, dry_run=True, deltas=plan)
        # Deltas write objects the walk never sees: not with --subpath (the commit would be
        # complete) nor with --bareuseronly-files (each object's mode must be checked).
        if not options.commit_metadata_only and not options.dry_run and options.subpaths is None \
                and not bareuseronly_files:
            ref_exists = {
                c: t.ref is not None and repo.refs.get(local_ref(t.ref)) is not None for t, c in resolved.items()
            }
            stages = [DeltaStage(session, ref_exists), *stages]
        source: ObjectSource = (
            HttpSource(session.fetcher, session.url, session.content_url, session.config)
            if local_path is None
            else LocalRepoSource(Repo.open(local_path), session.config)
        )
        if localcache:
            link = repo.mode is RepoMode.ARCHIVE
            caches = [LocalRepoSource(Repo.open(p), session.config, link=link) for p in localcache]
            source = CachedSource(source, caches)
        job = PullJob(
            repo,
            source,
            resolved,
            local_ref,
            Verifier(policy, refs_of, content_check=check_bareuseronly if bareuseronly_files else None,
                     bindings=_bindings(session.collection_id(remote), verify_bindings)),
            options,
            session.config,
            mirror_summary=found if mirror_all else None,
            stages=stages,
            control_bytes=lambda: session.bytes,
            allow_downgrade=allow_downgrade,
            pinned_refs=pinned,
            commit_times=times,
            mirror_collection=session.collection_id(remote) if mirror else None,
        )
        try:
            return run_pull(job, report)
        finally:
            if isinstance(source, CachedSource):
                source.close()
                source = source.inner
            if isinstance(source, LocalRepoSource):
                source.close()


def pull_local(
    repo: Repo,
    source: Path,
    refs: Sequence[str] = (),
    *,
    remote: str | None = None,
    config: PullConfig | None = None,
    depth: int = 0,
    commit_metadata_only: bool = False,
    dry_run: bool = False,
    progress: Callable[[PullEvent], None] | None = None,
    policy: trust.TrustPolicy | None = None,
    verify_bindings: bool = True,
) -> PullResult:
    """Copy ``refs`` (default: all local branches) from the repository at ``source``.

    Every object is verified as with a network pull. Refs land in ``refs/heads/`` (or under
    ``remote`` if given), as ``ostree pull-local`` does. ``policy`` checks the signatures of
    every commit as a pull from that remote would (``pull-local --gpg-verify --remote=R``).
    With ``config.static_deltas`` set to ``REQUIRE`` (``--require-static-deltas``) each commit
    comes in through one of the source's static deltas, or the pull fails. Bindings are checked
    as by :func:`pull`, against the source's own ``core.collection-id`` (as ostree does).

    Raises:
        RepoNotFound: if ``source`` is not a repository.
        RefNotFound: a ref the source does not have.
        ChecksumMismatch, CorruptObject: the source holds corrupt objects.
    """
    cfg = config or PullConfig()
    src = Repo.open(source)
    targets = parse_pull_refs(refs)
    if not targets:
        targets = [PullTarget(r) for r in src.list_refs() if ":" not in r]
    resolved: dict[PullTarget, Checksum] = {}
    for t in targets:
        if t.commit is None and t.ref is not None:
            csum = src.resolve_rev(t.ref)
            assert csum is not None  # resolve_rev raises RefNotFound instead of returning None
            resolved[t] = csum
        else:
            assert t.commit is not None
            resolved[t] = t.commit
    if policy is not None:
        policy.check_start()
        if policy.verifies_summary:
            # ``--gpg-verify-summary``: the source's summary and summary.sig, as a remote's.
            try:
                summary = (src.path / "summary").read_bytes()
            except FileNotFoundError:
                raise RemoteError(f"{source}: no summary to verify (--gpg-verify-summary)") from None
            sig_path = src.path / "summary.sig"
            policy.check_summary(summary, sig_path.read_bytes() if sig_path.exists() else None)
    report = _progress(progress)
    report.emit(PullPhase.REFS, 0, 0, 0, force=True)
    local_ref: Callable[[str], str] = (lambda r: f"{remote}:{r}") if remote else (lambda r: r)
    # Between archive repositories content objects are hardlinked, as ostree does (copied when
    # the file system refuses, e.g. across file systems).
    local_source = LocalRepoSource(src, cfg, link=repo.mode is RepoMode.ARCHIVE)
    stages: list[PullStage] = []
    session = None
    if cfg.static_deltas is StaticDeltas.REQUIRE and not commit_metadata_only and not dry_run:
        # ``pull-local --require-static-deltas``: the source's deltas, found and applied as a
        # file:// pull finds them (its summary or delta-indexes/), fallbacks from its objects.
        if src.mode.value != "archive":
            raise RemoteError(f"{source}: static deltas can only be used from an archive repository")
        session = RemoteSession(FileFetcher(), source.resolve().as_uri(), config=cfg, owns_fetcher=True)
        ref_exists = {c: t.ref is not None and repo.refs.get(local_ref(t.ref)) is not None for t, c in resolved.items()}
        stages.append(DeltaStage(session, ref_exists))
    try:
        job = PullJob(
            repo,
            local_source,
            resolved,
            local_ref,
            Verifier(policy if policy is not None else NoSignatures(), _refs_of(resolved),
                     bindings=_bindings(src.collection_id, verify_bindings)),
            PullOptions(depth, commit_metadata_only, dry_run, False, progress),
            cfg,
            stages=stages,
        )
        return run_pull(job, report)
    finally:
        local_source.close()
        if session is not None:
            session.close()
