"""The pull engine: fetch -> verify -> write, threaded, with back-pressure and a failure policy.

Layer: pull. :class:`ObjectEngine` walks the commits it is given with a
:class:`~bootree.pull.plan.PullPlan` (what is missing), asks an
:class:`~bootree.pull.sources.ObjectSource` for each object, runs every arrival through the
:class:`~bootree.pull.verify.Verifier`, and hands verified values to the writer thread
(:mod:`bootree.pull.writer`). It knows nothing of URLs, summaries or refs.

Threads: the caller's thread schedules requests and verifies metadata and small content; two
verifier threads inflate and hash larger content (zlib and hashlib release the GIL); one writer
thread creates files; one publisher thread renames finished content into ``objects/`` early;
content announced over ``stream_threshold`` is verified and written by the fetcher's thread as it
arrives (:class:`~bootree.pull.writer.StreamedObject`), never held whole.

Back-pressure: requests stop while ``in_flight`` are outstanding or while the bytes received and
not yet written exceed :class:`BufferBudget`'s limit, which follows what the writer absorbs.

Failure policy: the first error stops new requests; what is already on its way is still
verified and kept (a rerun fetches only what is missing), then the error is raised.

**Stages.** A :class:`PullStage` runs inside the pull's transaction before the object walk (a
static delta: fetch and apply, writing objects the walk then finds present). It gets a
:class:`StageContext`; the walk afterwards fetches whatever the stages did not provide.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from bootree.errors import BootreeError, CorruptObject, NotFoundError, RepoError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming, archive_header_length
from bootree.format.objects import Commit, DirTree
from bootree.pull.options import MiB, PullConfig, PullPhase
from bootree.pull.plan import Action, PullPlan
from bootree.pull.sources import Arrival, ObjectSource
from bootree.pull.verify import Verifier, received_header, verify_commitmeta, verify_content, verify_metadata
from bootree.pull.writer import EarlyPublisher, StreamedObject, WriteJob, WriterThreads
from bootree.repo import Repo, RepoMode
from bootree.repo.contentio import DECOMPRESSOBJ, INFLATE_ERRORS
from bootree.repo.transaction import Transaction
from bootree.transport import BodyStream, StreamFactory

__all__ = ["BufferBudget", "ObjectEngine", "Progress", "PullStage", "StageContext"]

log = logging.getLogger(__name__)

#: Content objects up to this size (as received) are verified on the engine's thread itself.
_INLINE_VERIFY = 64 * 1024
#: The repository's inflater (zlib-ng): received ``.filez`` objects are verified with it.
_INFLATER = (DECOMPRESSOBJ, INFLATE_ERRORS)


class Progress:
    """Rate-limited progress reports (at most ten a second, plus forced ones)."""

    def __init__(self, callback: Callable[[PullPhase, int, int, int], None] | None) -> None:
        self.callback = callback
        self._last = 0.0

    def due(self, *, force: bool = False) -> bool:
        """Whether :meth:`emit` would report now (callers skip computing its arguments if not)."""
        return self.callback is not None and (force or time.monotonic() - self._last >= 0.1)

    def emit(self, phase: PullPhase, fetched: int, requested: int, nbytes: int, *, force: bool = False) -> None:
        """Report, unless the last report was under 0.1 s ago (``force`` reports anyway)."""
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self.callback(phase, fetched, requested, nbytes)


class BufferBudget:
    """How many received bytes may wait for verification and writing before fetching pauses.

    Sized from what the writer absorbs: once it has been busy for a moment, the limit is the
    bytes it writes in ``lookahead`` seconds, between ``floor`` and ``cap``. A fast writer gets a
    deeper buffer (the network stays ahead of it); a slow disk keeps little in memory, since
    more would only wait longer. Until then the limit is ``cap``.
    """

    def __init__(self, cap: int, *, floor: int = 4 * MiB, lookahead: float = 0.5) -> None:
        self.cap = max(cap, 1)
        self.floor = min(floor, self.cap)
        self.lookahead = lookahead
        self.held = 0
        self._busy = 0.0
        self._written = 0
        self._limit = self.cap

    def observe(self, busy_seconds: float, written: int) -> None:
        """The writer's cumulative busy time and bytes written."""
        if busy_seconds == self._busy and written == self._written:
            return  # the engine asks once per arrival; the limit is unchanged
        self._busy, self._written = busy_seconds, written
        self._limit = self._compute_limit()

    def _compute_limit(self) -> int:
        if self._busy < 0.2:
            return self.cap
        rate = self._written / self._busy
        return int(min(self.cap, max(self.floor, rate * self.lookahead)))

    @property
    def limit(self) -> int:
        """The current limit in bytes (follows :meth:`observe`)."""
        return self._limit

    @property
    def full(self) -> bool:
        """Whether fetching should pause."""
        return self.held >= self._limit


@dataclass
class StageContext:
    """What a :class:`PullStage` may use: the pull's transaction, commits, verifier and config."""

    repo: Repo
    txn: Transaction
    #: Target commits and how many parents of each to walk (-1: all).
    commits: dict[Checksum, int]
    verifier: Verifier
    config: PullConfig


class PullStage(Protocol):
    """A step that runs before the object walk inside the pull's transaction (e.g. a static delta).

    It writes what it can through ``ctx.txn`` (verified values only); objects it provides are
    then present for the walk, which fetches the rest. Raising fails the pull like any object
    error (no ref moves; verified objects are kept for a rerun).
    """

    def run(self, ctx: StageContext) -> None:
        """Do the stage's work."""
        ...


class ObjectEngine:
    """Fetch every missing object of some commits from a source, verified, into a transaction."""

    def __init__(
        self,
        repo: Repo,
        source: ObjectSource,
        verifier: Verifier,
        config: PullConfig,
        *,
        metadata_only: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
        subpaths: tuple[str, ...] | None = None,
    ) -> None:
        self.repo = repo
        self.source = source
        self.verifier = verifier
        self.config = config
        self.metadata_only = metadata_only
        self.dry_run = dry_run
        self.subpaths = subpaths
        self.progress = progress or Progress(None)
        self.metadata_fetched = 0
        self.content_fetched = 0
        self.content_bytes = 0
        #: Objects read from local cache repositories instead (``--localcache-repo``).
        self.metadata_local = 0
        self.content_local = 0
        self.bytes = 0
        self.budget = BufferBudget(config.max_buffered_bytes)
        self._jobs = 0
        #: Guards ``_jobs``, ``budget.held`` and ``_job_errors`` (writer and verifier threads
        #: update them too). A plain lock: ``_count_job`` takes it per object, and a
        #: Condition's own ``with`` is Python-level; the Condition shares it for waiting.
        self._jobs_lock = threading.Lock()
        self._jobs_cond = threading.Condition(self._jobs_lock)
        self._job_errors: list[BaseException] = []
        self._since_checkpoint = 0
        self._writer: WriterThreads | None = None
        self._publisher: EarlyPublisher | None = None
        self._plan: PullPlan | None = None
        #: Detached metadata seen per commit (None: known absent), for the signature policy.
        self._detached: dict[Checksum, bytes | None] = {}
        #: Fetched commits waiting for their detached metadata before they are verified.
        self._parked: dict[Checksum, tuple[Action, bytes]] = {}

    # --- the walk -------------------------------------------------------------------------------

    def emit(self, phase: PullPhase, *, force: bool = False) -> None:
        """Report progress of the walk (called per object: nothing is computed unless due)."""
        if not self.progress.due(force=force):
            return
        plan = self._plan
        requested = (plan.fetch_metadata + plan.fetch_content) if plan else 0
        self.progress.emit(phase, self.metadata_fetched + self.content_fetched, requested, self.bytes, force=force)

    def run(self, txn: Transaction | None, commits: dict[Checksum, int]) -> PullPlan:
        """Fetch every missing object of ``commits`` (commit -> depth); raises on the first failure.

        ``txn`` None is a dry run: metadata is fetched and verified to count what is missing;
        nothing is written and no content is fetched.
        """
        repo = self.repo
        have = txn.has_object_indexed if txn is not None else repo.store.index().has
        no_partial = not any((repo.path / "state").glob("*.commitpartial"))
        plan = self._plan = PullPlan(
            have, repo.is_partial, metadata_only=self.metadata_only, trust_local_trees=no_partial,
            subpaths=self.subpaths,
        )
        todo: deque[Action] = deque()
        local: deque[Action] = deque()

        def add(actions: Iterable[Action]) -> None:
            for a in actions:
                if a.local:
                    local.append(a)
                elif a.otype is ObjectType.FILE and self.dry_run:
                    continue  # counted by the plan, not fetched
                else:
                    todo.append(a)

        for csum, depth in commits.items():
            add(plan.start_commit(csum, depth=depth))

        failure: BaseException | None = None
        pool = concurrent.futures.ThreadPoolExecutor(max(1, self.config.workers), thread_name_prefix="bootree-verify")
        source = self.source
        budget = self.budget
        in_flight = self.config.in_flight
        try:
            while True:
                while local:
                    a = local.popleft()
                    if a.otype is ObjectType.COMMIT:
                        add(self._local_commit(txn, plan, a))
                    else:
                        add(plan.dirtree_arrived(repo.read_dirtree(a.checksum), path=a.path))
                if self._job_errors and failure is None:
                    failure = self._job_errors[0]
                if self._writer is not None:
                    budget.observe(self._writer.busy, self._writer.written)
                # Read once: by the source contract each submit adds exactly one pending arrival.
                pending = source.pending
                while failure is None and todo and pending < in_flight and not budget.full:
                    a = todo.popleft()
                    source.submit(a, stream=self._stream_for(txn, a))
                    pending += 1
                if pending == 0:
                    if failure is None and local:
                        continue
                    if failure is None and todo:
                        # Everything received is waiting for verification: let it catch up.
                        with self._jobs_cond:
                            if budget.full and not self._job_errors:
                                self._jobs_cond.wait(0.5)
                        continue
                    break
                arrival = source.wait()
                try:
                    add(self._arrived(pool, txn, plan, arrival))
                except BootreeError as e:
                    # Stop asking for more, but keep what is already on its way: every object
                    # that arrives intact is kept, so a rerun fetches only what is missing.
                    if failure is None:
                        failure = e
                    continue
                except OSError as e:  # a failed write of a streamed object: the disk, not the data
                    if failure is None:
                        failure = e
                    continue
                self.emit(PullPhase.OBJECTS)
                if (
                    failure is None
                    and txn is not None
                    and self.config.checkpoint_objects
                    and self._since_checkpoint >= self.config.checkpoint_objects
                ):
                    self._drain()
                    txn.checkpoint()
                    self._since_checkpoint = 0
            self._drain()
            if failure is None and self._job_errors:
                failure = self._job_errors[0]
            if failure is None and self._parked:
                failure = RepoError(f"commit {next(iter(self._parked))}: its detached metadata never arrived")
            if failure is not None:
                raise failure
        finally:
            pool.shutdown(wait=True)
            self._drain()
            if self._writer is not None:
                self._writer.close()  # closes the publisher too
                self._writer = None
        if self._publisher is not None and self._publisher.error is not None:
            # Only on the success path: a failure already propagating is the one to report.
            raise self._publisher.error
        self.emit(PullPhase.OBJECTS, force=True)
        return plan

    def _stream_for(self, txn: Transaction | None, a: Action) -> StreamFactory | None:
        """For content: write a body announced over ``stream_threshold`` straight to its file."""
        if txn is None or a.otype is not ObjectType.FILE:
            return None
        threshold = self.config.stream_threshold
        framing = self.source.framing

        def factory(length: int | None) -> BodyStream | None:
            if length is None or length <= threshold:
                return None
            return StreamedObject(txn, framing, a.checksum, self.verifier.content_check)

        return factory

    # --- arrivals ---------------------------------------------------------------------------------

    def _arrived(
        self, pool: concurrent.futures.ThreadPoolExecutor, txn: Transaction | None, plan: PullPlan, arrival: Arrival
    ) -> list[Action]:
        a = arrival.action
        if arrival.error is not None:
            if isinstance(arrival.error, NotFoundError) and (a.optional or a.parent):
                if a.parent:
                    log.info("parent commit %s is not on the remote; history ends there", a.checksum)
                if a.otype is ObjectType.COMMIT_META:
                    self.metadata_fetched += 1  # as ostree counts it: a request answered, even by 404
                    return self._detached_known(txn, plan, a.checksum, None)
                return []
            err = arrival.error
            err.add_note(f"while pulling {a.otype.value} object {a.checksum}")
            raise err
        data = arrival.data
        assert data is not None
        if arrival.stream is not None:
            assert isinstance(arrival.stream, StreamedObject)
            if not arrival.cached:
                self.bytes += arrival.stream.received
                self.content_fetched += 1
                self.content_bytes += arrival.stream.received
            self._queue(txn, WriteJob(ObjectType.FILE, a.checksum, 0, streamed=arrival.stream), 0)
            return []
        if arrival.cached:
            self._count_cached(a.otype)
        if arrival.link_from is not None:
            if self.verifier.content_check is not None:
                with open(arrival.link_from, "rb") as f:
                    prefix = f.read(8)
                    head = prefix + f.read(max(0, archive_header_length(prefix) - 8))
                self.verifier.content_check(a.checksum, received_header(head, ContentFraming.ARCHIVED))
            if not arrival.cached:
                self.content_fetched += 1
            self._queue(txn, WriteJob(ObjectType.FILE, a.checksum, 0, link_from=arrival.link_from), 0)
            return []
        if not arrival.cached:
            self.bytes += len(data)
        if a.otype is ObjectType.FILE:
            self._content_arrived(pool, txn, a.checksum, data, arrival.framing or self.source.framing, arrival.cached)
            return []
        if not arrival.cached:
            self.metadata_fetched += 1
        if a.otype is ObjectType.COMMIT_META:
            try:
                verify_commitmeta(a.checksum, data)
            except CorruptObject as e:
                if self.verifier.policy.wants_detached_metadata:
                    raise
                # Nothing checks signatures here: a malformed detached metadata cannot make the
                # pull unsafe, so (as ostree pulls it) the commit comes in, without the junk.
                log.warning("%s; not stored", e)
                return self._detached_known(txn, plan, a.checksum, None)
            if txn is not None:
                txn.write_commitmeta(a.checksum, data)
            return self._detached_known(txn, plan, a.checksum, data)
        if a.otype is ObjectType.COMMIT:
            if self.verifier.policy.wants_detached_metadata and a.checksum not in self._detached:
                self._parked[a.checksum] = (a, data)  # verified once its signature is here
                return []
            return self._commit_arrived(txn, plan, a, data, self._detached.get(a.checksum))
        verified = verify_metadata(a.otype, a.checksum, data)
        self._queue(txn, WriteJob(a.otype, a.checksum, len(data), meta=verified), len(data))
        if isinstance(verified.value, DirTree):
            return plan.dirtree_arrived(verified.value, checksum=a.checksum, path=a.path)
        return []

    def _detached_known(
        self, txn: Transaction | None, plan: PullPlan, csum: Checksum, data: bytes | None
    ) -> list[Action]:
        self._detached[csum] = data
        parked = self._parked.pop(csum, None)
        if parked is None:
            if self.repo.has_object(ObjectType.COMMIT, csum):
                # A commit already complete here: a ref moving to it needs the same trust as a
                # fetched one (it may have come from another, unverified remote).
                if self.verifier.policy.wants_detached_metadata:
                    self.verifier.commit(csum, self.repo.load_metadata(ObjectType.COMMIT, csum), data)
                elif self.verifier.refs_of.get(csum):
                    self.verifier.check_bindings(csum, self.repo.read_commit(csum))
            return []
        return self._commit_arrived(txn, plan, parked[0], parked[1], data)

    def _local_commit(self, txn: Transaction | None, plan: PullPlan, a: Action) -> list[Action]:
        """A partial local commit whose tree is walked: under a signature policy, checked first."""
        if not self.verifier.policy.wants_detached_metadata:
            return plan.commit_arrived(a.checksum, self.repo.read_commit(a.checksum), depth=a.depth)
        data = self.repo.load_metadata(ObjectType.COMMIT, a.checksum)
        if a.checksum not in self._detached:
            self._parked[a.checksum] = (a, data)  # walked once its signature is here
            return []
        return self._commit_arrived(txn, plan, a, data, self._detached[a.checksum])

    def _commit_arrived(
        self, txn: Transaction | None, plan: PullPlan, a: Action, data: bytes, detached: bytes | None
    ) -> list[Action]:
        verified = self.verifier.commit(a.checksum, data, detached)
        commit = verified.value
        assert isinstance(commit, Commit)
        if not a.local:  # a partial local commit is already stored and marked
            if txn is not None:
                # Marked partial before its object can exist: a failure in between (the
                # marker's own write, say) must never leave a commit visible without the marker
                # that says its tree may be missing (found by the fault-injection harness).
                txn.mark_partial(a.checksum)
            self._queue(txn, WriteJob(ObjectType.COMMIT, a.checksum, len(data), meta=verified), len(data))
        return plan.commit_arrived(a.checksum, commit, depth=a.depth)

    def _count_cached(self, otype: ObjectType) -> None:
        """An object read from a local cache repository (``--localcache-repo``)."""
        if otype is ObjectType.FILE:
            self.content_local += 1
        elif otype is not ObjectType.COMMIT_META:
            self.metadata_local += 1

    def _content_arrived(
        self,
        pool: concurrent.futures.ThreadPoolExecutor,
        txn: Transaction | None,
        csum: Checksum,
        data: bytes,
        framing: ContentFraming,
        cached: bool = False,
    ) -> None:
        if not cached:
            self.content_fetched += 1
            self.content_bytes += len(data)
        if txn is None:
            return
        if self.verifier.content_check is not None:
            self.verifier.content_check(csum, received_header(data, framing))
        if framing is ContentFraming.ARCHIVED and txn.mode is RepoMode.ARCHIVE:
            # The .filez is stored as received; write_archived_file verifies it on the way in.
            self._queue(txn, WriteJob(ObjectType.FILE, csum, len(data), archived=data), len(data))
        elif len(data) <= _INLINE_VERIFY:
            # Most objects are small: verifying them here is cheaper than a thread hand-off.
            verified = verify_content(csum, data, framing, _INFLATER)
            held = len(data) + verified.size  # the received bytes and the inflated content
            self._queue(txn, WriteJob(ObjectType.FILE, csum, held, content=verified), held)
        else:
            self._count_job(len(data))
            pool.submit(self._verify_on_worker, txn, csum, data, framing)

    def _verify_on_worker(self, txn: Transaction, csum: Checksum, data: bytes, framing: ContentFraming) -> None:
        """Inflate and hash on a worker thread (zlib and hashlib release the GIL)."""
        try:
            verified = verify_content(csum, data, framing, _INFLATER)
        except BaseException as e:  # reported to the main loop, which stops the pull
            self._job_done(e, len(data))
            return
        with self._jobs_cond:
            self.budget.held += verified.size  # the inflated content waits for the writer too
        self._writer_for(txn).put(WriteJob(ObjectType.FILE, csum, len(data) + verified.size, content=verified))

    # --- the writer and its bookkeeping -----------------------------------------------------------

    def _queue(self, txn: Transaction | None, job: WriteJob, size: int) -> None:
        if txn is None:
            return
        self._count_job(size)
        self._writer_for(txn).put(job)

    def _count_job(self, size: int) -> None:
        with self._jobs_lock:
            self._jobs += 1
            self.budget.held += size
        self._since_checkpoint += 1

    def _writer_for(self, txn: Transaction) -> WriterThreads:
        if self._writer is None:
            with self._jobs_cond:
                if self._writer is None:
                    self._publisher = EarlyPublisher(txn) if self.config.publish_early else None
                    self._writer = WriterThreads(txn, self._job_done, self.config.writers, self._publisher)
        return self._writer

    def _job_done(self, error: BaseException | None, size: int) -> None:
        with self._jobs_cond:
            if error is not None:
                self._job_errors.append(error)
            self._jobs -= 1
            self.budget.held -= size
            self._jobs_cond.notify_all()

    def _drain(self) -> None:
        with self._jobs_cond:
            while self._jobs:
                self._jobs_cond.wait(0.5)
