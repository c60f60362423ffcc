"""Pulling through a static delta: find the delta a server offers, fetch it, apply it.

Layer: pull. A delta replaces the object walk for one commit: the client asks the server's
``delta-indexes/`` (when the summary says ``ostree.summary.indexed-deltas``, or without a
summary) or the summary's ``ostree.static-deltas`` for a delta ending at the wanted commit,
choosing, as libostree does, the newest local (complete) commit it has a ``FROM-TO`` delta
from, else a scratch delta when the ref does not exist locally yet. The superblock's SHA-256
must equal the digest the index or summary gives.

Then everything goes on the wire at once and is applied as it arrives: the fallback objects
and the first parts are requested together (bounded: at most :data:`PARTS_AHEAD` parts are
in flight or waiting, so memory stays at a few parts), fallbacks are verified and written as
they come, and part N is applied while the next ones download. No object the delta carries is
fetched again: after the delta, the ordinary walk finds them all present, so the bytes on the
wire are the superblock, the parts, the fallbacks and the commit's detached metadata.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bootree.errors import DeltaFormatError, FetchError, NotFoundError, RemoteError
from bootree.format.checksum import Checksum
from bootree.format.delta import BOOTREE_DELTAS_ROOT as BOOTREE_ROOT
from bootree.format.delta import (
    BOOTREE_SUMMARY_KEY,
    DeltaName,
    PartEntry,
    Superblock,
    decode_delta_index,
    delta_index_relpath,
)
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType
from bootree.format.summary import Summary
from bootree.pull.engine import StageContext
from bootree.pull.options import DeltaPlan, StaticDeltas
from bootree.pull.plan import object_path
from bootree.pull.session import RemoteSession
from bootree.pull.trust import TrustPolicy
from bootree.pull.verify import Verifier
from bootree.repo import Repo, Transaction
from bootree.transport import Fetcher, join_url

if TYPE_CHECKING:  # the applier (zstandard, bsdiff, ...) loads only when a delta is used
    from bootree.delta.apply import ApplyResult

__all__ = [
    "DeltaChoice", "DeltaPull", "DeltaStage", "StaticDeltas", "choose_delta", "plan_deltas", "pull_delta", "pull_deltas",
]

log = logging.getLogger(__name__)

#: Parts requested ahead of the one being applied (ostree fetches two at a time).
PARTS_AHEAD = 2
#: Largest superblock fetched over HTTP (inline parts make superblocks big).
MAX_SUPERBLOCK_SIZE = 256 << 20
MAX_INDEX_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class DeltaChoice:
    """The delta to pull and the superblock digest it was announced with."""

    name: DeltaName
    digest: bytes
    #: ``deltas`` (libostree's format) or ``bootree-deltas`` (bootree's own).
    root: str = "deltas"

    @property
    def relpath(self) -> str:
        """The delta's directory on the server."""
        return f"{self.root}/{self.name.relpath.removeprefix('deltas/')}"


@dataclass(slots=True)
class DeltaPull:
    """What a delta pull moved: requests and bytes, and what applying wrote."""

    name: DeltaName
    applied: ApplyResult
    bytes: int = 0
    requests: int = 0
    fallbacks: int = 0
    parts_fetched: list[int] = field(default_factory=list)


def _offered(
    fetcher: Fetcher, base_url: str, target: Checksum, summary: Summary | None, count: Callable[[int], None]
) -> dict[str, bytes]:
    """Delta name → superblock digest for every delta the server offers that ends at ``target``."""
    use_index = summary is None or summary.get("ostree.summary.indexed-deltas") is True
    if use_index:
        try:
            data = fetcher.fetch(join_url(base_url, delta_index_relpath(target)), max_length=MAX_INDEX_SIZE)
        except NotFoundError:
            data = None
        if data is not None:
            count(len(data))
            return decode_delta_index(data)
    if summary is None:
        return {}
    return {n: d for n, d in summary.static_deltas.items() if n.rpartition("-")[2] == target}


def choose_delta(
    repo: Repo,
    fetcher: Fetcher,
    base_url: str,
    target: Checksum,
    *,
    summary: Summary | None,
    ref_exists: bool,
    count: Callable[[int], None] = lambda n: None,
) -> DeltaChoice | None:
    """The delta libostree would use to reach ``target``, or ``None`` (pull objects instead).

    A bootree-format delta listed in the summary (``bootree.static-deltas``) is preferred: it
    is the smaller one; the same rules pick among them.
    """
    if summary is not None:
        own = summary.get(BOOTREE_SUMMARY_KEY)
        if isinstance(own, list):
            offered = {n: v.value for n, v in own if isinstance(v, Variant) and isinstance(v.value, bytes)}
            mine = _pick(repo, offered, target, ref_exists, base_url)
            if mine is not None:
                return DeltaChoice(mine.name, mine.digest, BOOTREE_ROOT)
    return _pick(repo, _offered(fetcher, base_url, target, summary, count), target, ref_exists, base_url)


def _pick(repo: Repo, offered: dict[str, bytes], target: Checksum, ref_exists: bool, base_url: str) -> DeltaChoice | None:
    best: tuple[int, DeltaChoice] | None = None
    scratch: DeltaChoice | None = None
    for text, digest in offered.items():
        try:
            name = DeltaName.parse(text)
        except Exception:  # an unparseable name in a server's index is skipped, as ostree does
            log.warning("ignoring delta %r offered by %s", text, base_url)
            continue
        if name.to_commit != target:
            continue
        if name.from_commit is None:
            scratch = DeltaChoice(name, digest)
            continue
        if not repo.has_object(ObjectType.COMMIT, name.from_commit) or repo.is_partial(name.from_commit):
            continue
        ts = repo.read_commit(name.from_commit).timestamp
        if best is None or ts > best[0]:
            best = (ts, DeltaChoice(name, digest))
    if best is not None:
        return best[1]
    if scratch is not None and not ref_exists:
        return scratch
    return None


class _Downloads:
    """Fallbacks and parts in flight on one fetcher; fallbacks are written as they arrive."""

    def __init__(
        self, fetcher: Fetcher, txn: Transaction, relpath: str, base: str, content_base: str, superblock: Superblock,
        stats: DeltaPull, max_content_size: int,
    ) -> None:
        self.fetcher = fetcher
        self.txn = txn
        self.base = join_url(base, relpath)
        self.content_base = content_base
        self.sb = superblock
        self.stats = stats
        self.max_content_size = max_content_size
        self.parts: dict[int, bytes] = {}
        self.fallbacks_left: set[Checksum] = set()
        self.next_part = 0
        self.needed: list[int] = []

    def start_fallbacks(self, missing: Sequence[tuple[ObjectType, Checksum]]) -> None:
        sizes = {f.checksum: f.compressed_size for f in self.sb.fallbacks}
        for otype, csum in missing:
            url = join_url(self.content_base, object_path(otype, csum))
            self.fetcher.submit(url, max_length=min(sizes.get(csum, 0), self.max_content_size), key=("fallback", csum))
            self.fallbacks_left.add(csum)
            self.stats.requests += 1
        self.stats.fallbacks = len(missing)

    def start_parts(self, needed: list[int]) -> None:
        self.needed = needed
        for _ in range(PARTS_AHEAD):
            self._submit_next_part()

    def _submit_next_part(self) -> None:
        if self.next_part >= len(self.needed):
            return
        index = self.needed[self.next_part]
        self.next_part += 1
        entry = self.sb.parts[index]
        # The declared size is the download limit: a bigger file fails here, unread.
        self.fetcher.submit(join_url(self.base, str(index)), max_length=entry.size, key=("part", index))
        self.stats.requests += 1

    def _one(self) -> None:
        done = self.fetcher.wait()
        key = done.key
        assert isinstance(key, tuple)
        if done.error is not None:
            raise done.error
        assert done.data is not None
        self.stats.bytes += len(done.data)
        if key[0] == "fallback":
            csum: Checksum = key[1]
            self.txn.write_archived_file(done.data, csum)
            self.fallbacks_left.discard(csum)
        else:
            index: int = key[1]
            self.parts[index] = done.data
            self.stats.parts_fetched.append(index)

    def part(self, index: int, entry: PartEntry) -> bytes:
        inline = self.sb.inline_part(index)
        if inline is not None:
            return inline
        while index not in self.parts:
            self._one()
        self._submit_next_part()
        return self.parts.pop(index)

    def finish_fallbacks(self) -> None:
        while self.fallbacks_left:
            self._one()


def pull_delta(
    repo: Repo,
    txn: Transaction,
    fetcher: Fetcher,
    base_url: str,
    choice: DeltaChoice,
    *,
    content_url: str | None = None,
    max_content_size: int = 1 << 30,
    verifier: Verifier | None = None,
    check_superblock: Callable[[str, bytes], None] | None = None,
) -> DeltaPull:
    """Fetch and apply the delta ``choice`` into ``txn`` (the caller commits and moves refs).

    ``check_superblock`` sees the superblock file (signed or not) before anything is used
    (the remote's :meth:`~bootree.pull.trust.TrustPolicy.check_delta_superblock`).

    The embedded commit goes through ``verifier`` (checksum, ref binding, signatures, with the
    detached metadata the superblock carries or else the server's ``.commitmeta``) before any
    part is fetched: a delta is never a way around signature checks.

    Raises:
        RemoteError: for a superblock whose digest or commits differ from what was announced.
        DeltaFormatError, DeltaError, ChecksumMismatch: see :func:`bootree.delta.apply.apply_delta`.
        FetchError: a download that failed.
    """
    from bootree.delta.apply import ApplyResult, apply_delta

    stats = DeltaPull(choice.name, ApplyResult(choice.name.to_commit))
    url = join_url(base_url, f"{choice.relpath}/superblock")
    data = fetcher.fetch(url, max_length=MAX_SUPERBLOCK_SIZE)
    stats.bytes += len(data)
    stats.requests += 1
    if hashlib.sha256(data).digest() != choice.digest:
        raise RemoteError(f"invalid checksum for static delta {choice.name}: the superblock differs from the summary's")
    if check_superblock is not None:
        check_superblock(str(choice.name), data)
    superblock = Superblock.from_bytes(data)
    if superblock.name != choice.name:
        raise DeltaFormatError(f"static delta {choice.name} has a superblock for {superblock.name}")
    if verifier is not None:
        detached = superblock.commitmeta
        if detached is None:
            try:
                detached = fetcher.fetch(
                    join_url(base_url, object_path(ObjectType.COMMIT_META, superblock.to_commit)), max_length=10 << 20
                )
                stats.bytes += len(detached)
                stats.requests += 1
            except NotFoundError:
                detached = None
        verifier.commit(superblock.to_commit, superblock.commit, detached)
    dl = _Downloads(fetcher, txn, choice.relpath, base_url, content_url or base_url, superblock, stats, max_content_size)
    needed = [i for i, e in enumerate(superblock.parts) if not all(txn.has_object(t, c) for t, c in e.objects)]
    dl.start_parts([i for i in needed if superblock.inline_part(i) is None])
    try:
        stats.applied = apply_delta(
            repo, txn, superblock, dl.part, fetch_fallbacks=dl.start_fallbacks, wait_fallbacks=dl.finish_fallbacks
        )
    except BaseException:
        _drain(fetcher)
        raise
    return stats


def _drain(fetcher: Fetcher) -> None:
    """Collect what is still in flight after a failure, so the fetcher can be used again."""
    while fetcher.pending:
        try:
            fetcher.wait()
        except FetchError:
            break


def pull_deltas(
    repo: Repo,
    txn: Transaction,
    fetcher: Fetcher,
    base_url: str,
    targets: dict[Checksum, bool],
    *,
    summary: Summary | None,
    mode: StaticDeltas,
    content_url: str | None = None,
    max_content_size: int = 1 << 30,
    verifier: Verifier | None = None,
    check_superblock: Callable[[str, bytes], None] | None = None,
) -> list[DeltaPull]:
    """Bring each target commit in through a delta where the server offers one.

    ``targets`` maps each wanted commit to whether its local ref already exists (a scratch
    delta is used only when it does not). As with libostree, deltas are not used for archive
    repositories or ``file://`` remotes unless ``mode`` is ``REQUIRE``, which also makes a
    missing delta an error. Commits already complete locally need no delta.

    Raises:
        RemoteError: ``REQUIRE`` and no delta for a target, or a superblock that does not match.
        DeltaFormatError, DeltaError, ChecksumMismatch, FetchError: see :func:`pull_delta`.
    """
    if mode is StaticDeltas.DISABLE:
        return []
    if mode is StaticDeltas.REQUIRE and repo.mode.value == "archive":
        # As libostree: a delta rebuilds objects for checkout, not the archive's .filez files.
        raise RemoteError("Can't use static deltas in an archive repo", hint="pull without --require-static-deltas")
    if mode is StaticDeltas.AUTO and not _usable(repo, base_url):
        return []  # archive targets, and local remotes (file://, pull-local) copy objects as cheaply
    out = []
    for target, ref_exists in targets.items():
        if repo.has_object(ObjectType.COMMIT, target) and not repo.is_partial(target):
            continue
        choice = choose_delta(repo, fetcher, base_url, target, summary=summary, ref_exists=ref_exists)
        if choice is None:
            if mode is StaticDeltas.REQUIRE:
                raise RemoteError(f"Static deltas required, but none found for {target} on {base_url}",
                                  hint="pull without --require-static-deltas")
            continue
        log.info("pulling %s through static delta %s", target, choice.name)
        out.append(
            pull_delta(
                repo, txn, fetcher, base_url, choice, content_url=content_url, max_content_size=max_content_size,
                verifier=verifier, check_superblock=check_superblock,
            )
        )
    return out


def plan_deltas(
    repo: Repo, fetcher: Fetcher, base_url: str, targets: dict[Checksum, bool], *, summary: Summary | None
) -> DeltaPlan:
    """The deltas a pull requiring them would use, from their superblocks (fetched and checked
    against the summary's digests; nothing is written): what ``--dry-run`` reports.

    Raises:
        RemoteError: no delta for a target, into an archive repository, or a superblock that
            differs from the summary's.
        FetchError: a download that failed.
    """
    if repo.mode.value == "archive":
        raise RemoteError("Can't use static deltas in an archive repo", hint="pull without --require-static-deltas")
    parts = fetched = size = fetched_size = usize = 0
    for target, ref_exists in targets.items():
        if repo.has_object(ObjectType.COMMIT, target) and not repo.is_partial(target):
            continue
        choice = choose_delta(repo, fetcher, base_url, target, summary=summary, ref_exists=ref_exists)
        if choice is None:
            raise RemoteError(f"no static delta to {target} on {base_url}", hint="pull without --require-static-deltas")
        data = fetcher.fetch(join_url(base_url, f"{choice.relpath}/superblock"), max_length=MAX_SUPERBLOCK_SIZE)
        if hashlib.sha256(data).digest() != choice.digest:
            raise RemoteError(f"invalid checksum for static delta {choice.name}: the superblock differs from the summary's")
        sb = Superblock.from_bytes(data)
        for entry in sb.parts:
            parts += 1
            size += entry.size
            usize += entry.uncompressed_size
            if all(repo.has_object(t, c) for t, c in entry.objects):
                fetched += 1
                fetched_size += entry.size
        for fb in sb.fallbacks:
            size += fb.compressed_size
            usize += fb.uncompressed_size
    return DeltaPlan(parts, fetched, size, fetched_size, usize)


class DeltaStage:
    """The pull stage that brings target commits in through static deltas (before the walk).

    ``ref_exists`` tells, per target commit, whether its local ref exists already (libostree
    uses a scratch delta only for a new ref).
    """

    def __init__(self, session: RemoteSession, ref_exists: dict[Checksum, bool]) -> None:
        self.session = session
        self.ref_exists = ref_exists
        self.used: list[DeltaPull] = []

    def run(self, ctx: StageContext) -> None:
        """Apply a delta for each target commit the server has one for."""
        mode = ctx.config.static_deltas
        if mode is StaticDeltas.DISABLE:
            return
        if mode is StaticDeltas.REQUIRE and ctx.repo.mode.value == "archive":
            raise RemoteError("Can't use static deltas in an archive repo", hint="pull without --require-static-deltas")
        found = self.session.summary() if mode is StaticDeltas.REQUIRE or _usable(ctx.repo, self.session.url) else None
        targets = {c: self.ref_exists.get(c, False) for c in ctx.commits}
        policy = ctx.verifier.policy
        check = policy.check_delta_superblock if isinstance(policy, TrustPolicy) else None
        self.used = pull_deltas(
            ctx.repo, ctx.txn, self.session.fetcher, self.session.url, targets,
            summary=found.summary if found is not None else None, mode=mode,
            content_url=self.session.content_url, max_content_size=ctx.config.max_content_size,
            verifier=ctx.verifier, check_superblock=check,
        )
        for used in self.used:
            self.session.bytes += used.bytes


def _usable(repo: Repo, url: str) -> bool:
    return repo.mode.value != "archive" and url.startswith(("http:", "https:"))
