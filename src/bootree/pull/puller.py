"""The puller: drive a fetcher, verify everything, write through one transaction.

Layer: pull; the only module of :mod:`bootree.pull` that does I/O. The walk itself is decided
by :mod:`bootree.pull.plan`; this module moves bytes:

1. resolve refs (the remote's ``summary``, else ``refs/heads/REF``), check the remote ``config``
   says ``archive`` (only archive repositories can be served as static files);
2. for each commit: fetch ``.commitmeta`` (404 is fine) and ``.commit``, mark it partial
   (``state/<c>.commitpartial``), then walk dirtrees, fetching only missing objects with many
   requests in flight;
3. every object is verified against the checksum it was requested under before it is staged
   (``expected=`` on every transaction write): a server sending wrong bytes cannot get them in;
4. on success: clear the partial markers, move the refs, commit the transaction. On failure:
   publish the objects already verified (so a rerun resumes without refetching them), leave
   refs untouched and re-raise.

Content objects (the bulk of the bytes) are verified (inflate + SHA-256) on a small thread pool,
since zlib and hashlib release the GIL, and written by one writer thread (parallel file
creation is slower on ext4, see :class:`_Writer`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import queue
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bootree import _fs
from bootree.errors import (
    BootreeError,
    ChecksumMismatch,
    CorruptObject,
    FormatError,
    KeyFileError,
    NotFoundError,
    RemoteError,
    VerificationError,
)
from bootree.format import gvariant
from bootree.format.checksum import Checksum, parse_checksum
from bootree.format.content import decode_archive_header
from bootree.format.keyfile import KeyFile
from bootree.format.objects import Commit, DirTree, FileHeader, ObjectType
from bootree.format.summary import Summary
from bootree.pull.plan import Action, PullPlan, PullTarget, object_path, parse_pull_refs, resolve_targets
from bootree.pull.remote import Remote
from bootree.repo import Repo, RepoMode
from bootree.repo.transaction import Transaction
from bootree.transport import FetchConfig, Fetcher, join_url, open_fetcher

__all__ = ["PullConfig", "PullEvent", "PullResult", "pull", "pull_local"]

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class PullConfig:
    """Limits and knobs of a pull; every download is bounded by one of these sizes.

    The defaults follow ostree where it has a limit (10 MiB for metadata objects and the
    summary) and are otherwise generous but finite, so that a hostile or broken server can make
    a pull fail, never make a device run out of memory or disk.
    """

    #: The remote ``summary`` file (ostree: 10 MiB).
    max_summary_size: int = 10 * MiB
    #: ``summary.sig``, ``config``, ``refs/heads/*``: small text files.
    max_small_file_size: int = 1 * MiB
    #: commit, dirtree, dirmeta and commitmeta objects (ostree's OSTREE_MAX_METADATA_SIZE).
    max_metadata_size: int = 10 * MiB
    #: One compressed content object; content is held in memory while it is verified.
    max_content_size: int = 1 * GiB
    #: Requests in flight (across all connections).
    in_flight: int = 64
    #: Received content waiting for verification and writing; fetching pauses above this.
    max_buffered_bytes: int = 256 * MiB
    #: Threads that verify content objects (inflate + SHA-256; these release the GIL).
    workers: int = 2
    #: Threads that create object files. One is fastest on the ext4 measured here: parallel
    #: file creation doubled the kernel time.
    writers: int = 1
    #: Publish written content objects in the background while the pull goes on (flushed
    #: first); the alternative is one flush and all renames at the end.
    publish_early: bool = True
    #: Publish verified objects every this many objects, so that even a killed pull resumes
    #: from there (0: only when the pull fails or ends).
    checkpoint_objects: int = 0
    #: Network settings (timeouts, retries, connections); remote keys may adjust them.
    fetch: FetchConfig = field(default_factory=FetchConfig)


@dataclass(frozen=True, slots=True)
class PullEvent:
    """Progress of a pull, emitted a few times per second and once at the end."""

    phase: str
    """``"refs"``, ``"objects"`` or ``"done"``."""
    fetched: int
    """Objects fetched and verified so far."""
    requested: int
    """Objects known to be needed so far (grows while dirtrees arrive)."""
    bytes: int
    """Bytes received so far."""


@dataclass(frozen=True, slots=True)
class PullResult:
    """What a pull did (or, with ``dry_run``, would do)."""

    refs: tuple[tuple[str, Checksum], ...]
    """Local refspecs and the commits they now point at (unchanged ones included)."""
    metadata_fetched: int
    content_fetched: int
    bytes_fetched: int
    requests: int
    seconds: float
    dry_run: bool = False
    content_bytes: int = 0
    """Bytes of content objects received for writing (ostree's "content written")."""


#: Content arrives either as a ``.filez`` (HTTP, archive sources) or as a checksum stream
#: ``u32be(len(H)) 0000 H content`` (pull-local from a bare-family repository).
_FILEZ = "filez"
_STREAM = "stream"
#: Content objects up to this size (as received) are verified on the network thread itself.
_INLINE_VERIFY = 64 * KiB


class _Aborted(Exception):
    pass


class _Puller:
    def __init__(
        self,
        repo: Repo,
        fetcher: Fetcher,
        base_url: str,
        *,
        content_url: str | None,
        config: PullConfig,
        progress: Callable[[PullEvent], None] | None,
        dry_run: bool,
        metadata_only: bool,
        content_format: str = _FILEZ,
    ) -> None:
        self.repo = repo
        self.fetcher = fetcher
        self.base_url = base_url
        self.content_url = content_url or base_url
        self.config = config
        self.progress = progress
        self.dry_run = dry_run
        self.metadata_only = metadata_only
        self.content_format = content_format
        self.metadata_fetched = 0
        self.content_fetched = 0
        self.content_bytes = 0
        self.bytes = 0
        self._last_event = 0.0
        self._jobs = 0
        self._buffered = 0
        self._jobs_lock = threading.Lock()
        self._jobs_cond = threading.Condition(self._jobs_lock)
        self._job_errors: list[BaseException] = []
        self._since_checkpoint = 0
        self._writer: _Writer | None = None
        self._publisher: _EarlyPublisher | None = None
        #: Refs each target commit is pulled as (for the ref-binding check).
        self.refs_of: dict[Checksum, list[str]] = {}

    # --- small files ------------------------------------------------------------------------------

    def fetch_optional(self, path: str, max_length: int) -> bytes | None:
        """A control file, or None on 404."""
        try:
            data = self.fetcher.fetch(join_url(self.base_url, path), max_length=max_length)
        except NotFoundError:
            return None
        self.bytes += len(data)
        return data

    def check_remote_config(self) -> None:
        """The remote must be an archive repository: only those serve ``.filez`` objects."""
        data = self.fetch_optional("config", self.config.max_small_file_size)
        if data is None:
            raise RemoteError(f"{self.base_url} has no 'config': not an ostree repository")
        try:
            kf = KeyFile.from_text(data.decode("utf-8"))
        except (UnicodeDecodeError, KeyFileError) as e:
            raise RemoteError(f"{self.base_url}/config is not a valid repository config: {e}") from e
        mode = kf.get("core", "mode", "bare") or "bare"
        if mode not in ("archive", "archive-z2"):
            raise RemoteError(
                f"remote repository at {self.base_url} has mode {mode!r}; only archive can be pulled"
            )

    def fetch_summary(self) -> tuple[Summary | None, bytes | None]:
        data = self.fetch_optional("summary", self.config.max_summary_size)
        if data is None:
            return None, None
        try:
            return Summary.from_bytes(data), data
        except FormatError as e:
            raise RemoteError(f"{self.base_url}/summary is corrupt: {e}") from e

    def fetch_ref_file(self, ref: str) -> Checksum | None:
        data = self.fetch_optional(f"refs/heads/{ref}", self.config.max_small_file_size)
        if data is None:
            return None
        try:
            return parse_checksum(data.decode("ascii").strip())
        except (UnicodeDecodeError, FormatError) as e:
            raise RemoteError(f"{self.base_url}/refs/heads/{ref} is not a checksum") from e

    # --- events -------------------------------------------------------------------------------

    def emit(self, phase: str, plan: PullPlan | None, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_event < 0.1:
            return
        self._last_event = now
        requested = (plan.fetch_metadata + plan.fetch_content) if plan else 0
        fetched = self.metadata_fetched + self.content_fetched
        self.progress(PullEvent(phase, fetched, requested, self.bytes))

    # --- the object walk ---------------------------------------------------------------------------

    def _url(self, action: Action) -> str:
        # As ostree: every object comes from contenturl; only .commitmeta (like summary and
        # config) from url, since signatures must not come from a content mirror.
        base = self.base_url if action.otype is ObjectType.COMMIT_META else self.content_url
        return join_url(base, object_path(action.otype, action.checksum))

    def _limit(self, otype: ObjectType) -> int:
        return self.config.max_content_size if otype is ObjectType.FILE else self.config.max_metadata_size

    def walk(self, txn: Transaction | None, commits: dict[Checksum, int]) -> PullPlan:
        """Fetch every missing object of ``commits`` (commit -> depth); raises on the first failure."""
        repo = self.repo
        have: Callable[[ObjectType, Checksum], bool] = (
            txn.has_object_indexed if txn is not None else repo.store.index().has
        )
        no_partial = not any((repo.path / "state").glob("*.commitpartial"))
        plan = PullPlan(have, repo.is_partial, metadata_only=self.metadata_only, trust_local_trees=no_partial)
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
        pool = concurrent.futures.ThreadPoolExecutor(
            max(1, self.config.workers), thread_name_prefix="bootree-verify"
        )
        try:
            while True:
                while local:
                    a = local.popleft()
                    if a.otype is ObjectType.COMMIT:
                        commit = repo.read_commit(a.checksum)
                        add(plan.commit_arrived(a.checksum, commit, depth=a.depth))
                    else:
                        add(plan.dirtree_arrived(repo.read_dirtree(a.checksum)))
                if self._job_errors and failure is None:
                    failure = self._job_errors[0]
                while (
                    failure is None
                    and todo
                    and self.fetcher.pending < self.config.in_flight
                    and self._buffered < self.config.max_buffered_bytes
                ):
                    a = todo.popleft()
                    self.fetcher.submit(self._url(a), max_length=self._limit(a.otype), key=a)
                if self.fetcher.pending == 0:
                    if failure is None and local:
                        continue
                    if failure is None and todo:
                        # Everything received is waiting for verification: let it catch up.
                        with self._jobs_cond:
                            if self._buffered >= self.config.max_buffered_bytes and not self._job_errors:
                                self._jobs_cond.wait(0.5)
                        continue
                    break
                done = self.fetcher.wait()
                key = done.key
                assert isinstance(key, Action)
                a = key
                try:
                    if done.error is not None:
                        if isinstance(done.error, NotFoundError) and (a.optional or a.parent):
                            if a.parent:
                                log.info(
                                    "parent commit %s is not on the remote; history ends there", a.checksum
                                )
                            continue
                        err = done.error
                        err.add_note(f"while pulling {a.otype.value} object {a.checksum}")
                        raise err
                    data = done.data
                    assert data is not None
                    self.bytes += len(data)
                    if a.otype is ObjectType.FILE:
                        self._submit_content(pool, txn, a.checksum, data)
                    else:
                        add(self._metadata_arrived(txn, plan, a, data))
                except BootreeError as e:
                    # Stop asking for more, but keep what is already on its way: every object
                    # that arrives intact is kept, so a rerun fetches only what is missing.
                    if failure is None:
                        failure = e
                    continue
                self.emit("objects", plan)
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
        self.emit("objects", plan, force=True)
        return plan

    def _drain(self) -> None:
        with self._jobs_cond:
            while self._jobs:
                self._jobs_cond.wait(0.5)

    def _metadata_arrived(
        self, txn: Transaction | None, plan: PullPlan, a: Action, data: bytes
    ) -> list[Action]:
        csum = a.checksum
        self.metadata_fetched += 1
        if a.otype is ObjectType.COMMIT_META:
            try:
                gvariant.decode("a{sv}", data)
            except FormatError as e:
                raise CorruptObject(csum, "commitmeta", str(e)) from e
            if txn is not None:
                txn.write_commitmeta(csum, data)
            return []
        actual = Checksum(hashlib.sha256(data).hexdigest())
        if actual != csum:
            raise ChecksumMismatch(csum, actual, a.otype.value)
        try:
            if a.otype is ObjectType.COMMIT:
                commit = Commit.from_bytes(data)
            elif a.otype is ObjectType.DIR_TREE:
                tree = DirTree.from_bytes(data)
        except FormatError as e:
            raise CorruptObject(csum, a.otype.value, str(e)) from e
        if txn is not None:
            # Written by the writer thread: one thread creating files is faster than two.
            # Commits and dirtrees were parsed (validated) just above: no second parse there.
            with self._jobs_lock:
                self._jobs += 1
                self._buffered += len(data)
            self._since_checkpoint += 1
            self._writer_for(txn).put(_WriteJob(a.otype, csum, data, len(data)))
        if a.otype is ObjectType.COMMIT:
            for ref in self.refs_of.get(csum, ()):
                _check_ref_binding(commit, ref, csum)
            if txn is not None:
                txn.mark_partial(csum)
            return plan.commit_arrived(csum, commit, depth=a.depth)
        if a.otype is ObjectType.DIR_TREE:
            return plan.dirtree_arrived(tree)
        return []

    def _submit_content(
        self,
        pool: concurrent.futures.ThreadPoolExecutor,
        txn: Transaction | None,
        csum: Checksum,
        data: bytes,
    ) -> None:
        self.content_fetched += 1
        self.content_bytes += len(data)
        if txn is None:
            return
        with self._jobs_lock:
            self._jobs += 1
            self._buffered += len(data)
        self._since_checkpoint += 1
        writer = self._writer_for(txn)
        if self.content_format == _FILEZ and txn.repo.mode is RepoMode.ARCHIVE:
            # The .filez is stored as received; write_archived_file verifies it on the way in.
            writer.put(_WriteJob(ObjectType.FILE, csum, data, len(data)))
        elif len(data) <= _INLINE_VERIFY:
            # Most objects are small: verifying them here is cheaper than a thread hand-off.
            try:
                header, content = _verify_content(csum, data, self.content_format)
            except BaseException as e:
                self._job_done(e, len(data))
                raise
            writer.put(_WriteJob(ObjectType.FILE, csum, content, len(data), header))
        else:
            pool.submit(self._verify_content, csum, data)

    def _writer_for(self, txn: Transaction) -> _Writer:
        if self._writer is None:
            self._publisher = _EarlyPublisher(txn) if self.config.publish_early else None
            self._writer = _Writer(txn, self._job_done, self.config.writers, self._publisher)
        return self._writer

    def _verify_content(self, csum: Checksum, data: bytes) -> None:
        """Inflate and hash on a worker thread (zlib and hashlib release the GIL)."""
        try:
            header, content = _verify_content(csum, data, self.content_format)
        except BaseException as e:  # reported to the main loop, which stops the pull
            self._job_done(e, len(data))
            return
        assert self._writer is not None
        self._writer.put(_WriteJob(ObjectType.FILE, csum, content, len(data), header))

    def _job_done(self, error: BaseException | None, size: int) -> None:
        if error is not None:
            self._job_errors.append(error)
        with self._jobs_cond:
            self._jobs -= 1
            self._buffered -= size
            self._jobs_cond.notify_all()


def _verify_content(csum: Checksum, data: bytes, fmt: str) -> tuple[FileHeader, bytes]:
    """Header and content of a received content object, checked against ``csum``.

    Raises:
        CorruptObject: if it does not parse or inflate.
        ChecksumMismatch: if it hashes to something else.
    """
    try:
        if fmt == _FILEZ:
            parsed = decode_archive_header(data)
            header = parsed.header
            body = memoryview(data)[parsed.body_offset :]
            if header.is_symlink:
                if len(body):
                    raise FormatError("symlink object has a body")
                content = b""
            else:
                d = zlib.decompressobj(-15)
                content = d.decompress(body, parsed.size + 1)
                if len(content) != parsed.size or not d.eof or d.unused_data or d.unconsumed_tail:
                    raise FormatError(f"content does not inflate to the declared {parsed.size} bytes")
        else:
            hlen = int.from_bytes(data[:4], "big")
            header = FileHeader.from_bytes(data[8 : 8 + hlen])
            content = bytes(memoryview(data)[8 + hlen :])
    except (FormatError, zlib.error, ValueError) as e:
        raise CorruptObject(csum, "file", str(e)) from e
    hasher = hashlib.sha256(header.checksum_prefix())
    hasher.update(content)
    actual = hasher.hexdigest()
    if actual != csum:
        raise ChecksumMismatch(csum, Checksum(actual), "file")
    return header, content


@dataclass(frozen=True, slots=True)
class _WriteJob:
    """One object for the writer thread: ``header`` is set for content verified by a worker."""

    otype: ObjectType
    checksum: Checksum
    data: bytes
    size: int
    header: FileHeader | None = None


class _Writer:
    """The one thread that creates object files.

    Measured on ext4 here: two threads creating files at once take twice the system time of
    one and finish later than one thread doing both halves, so verification is parallel and
    file creation is serial.
    """

    def __init__(
        self,
        txn: Transaction,
        done: Callable[[BaseException | None, int], None],
        threads: int = 1,
        publisher: _EarlyPublisher | None = None,
    ) -> None:
        self.txn = txn
        self.done = done
        self.publisher = publisher
        self.busy = 0.0
        self.queue: queue.SimpleQueue[_WriteJob | None] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._run, name=f"bootree-writer-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for t in self.threads:
            t.start()

    def put(self, job: _WriteJob) -> None:
        self.queue.put(job)

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        if self.publisher is not None:
            self.publisher.close()
        log.debug("writer threads busy for %.2f s", self.busy)

    def _run(self) -> None:
        txn = self.txn
        while True:
            job = self.queue.get()
            if job is None:
                return
            error: BaseException | None = None
            t0 = time.perf_counter()
            try:
                if job.header is not None:
                    # Content a worker has just inflated and hashed to job.checksum: the
                    # repository need not hash it a second time.
                    chunks = [job.data] if job.data else []
                    txn.write_content_stream(
                        job.header, chunks, len(job.data), expected=job.checksum, prehashed=True
                    )
                elif job.otype is ObjectType.FILE:  # archive to archive: verified by the repository
                    txn.write_archived_file(job.data, expected=job.checksum)
                else:  # commits and dirtrees were parsed by the puller already
                    txn.write_metadata(
                        job.otype,
                        job.data,
                        expected=job.checksum,
                        trusted=job.otype is not ObjectType.DIR_META,
                    )
            except BaseException as e:  # reported to the main loop
                error = e
            else:
                if self.publisher is not None and job.otype is ObjectType.FILE:
                    self.publisher.add(job.checksum)
            self.busy += time.perf_counter() - t0
            self.done(error, job.size)


class _EarlyPublisher:
    """Publishes written content objects in batches while the pull goes on.

    Without it, every object of a pull waits for the end: one ``syncfs`` for all the data, then
    one rename per object, about 0.6 s for the benchmark corpus with nothing else to do. Here a
    thread flushes and renames what the writer has finished every second (or every
    :data:`_EARLY_BATCH` objects), overlapping that with the download; see
    :meth:`Transaction.publish_early` for why this is safe. What is left at the end is
    published by the transaction's commit as before.
    """

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn
        self.error: BaseException | None = None
        self._ready: list[Checksum] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="bootree-publish", daemon=True)
        self._thread.start()

    def add(self, csum: Checksum) -> None:
        """Record a content object the writer has completely written."""
        with self._lock:
            self._ready.append(csum)
            if len(self._ready) >= _EARLY_BATCH:
                self._wake.set()

    def close(self) -> None:
        """Stop (objects not yet published stay staged for the commit)."""
        self._closing = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(_EARLY_INTERVAL)
            self._wake.clear()
            if self._closing:
                return
            with self._lock:
                batch, self._ready = self._ready, []
            if not batch:
                continue
            try:
                self.txn.publish_early(ObjectType.FILE, batch)
            except BaseException as e:  # reported by the puller at the end of the walk
                self.error = e
                return


#: Early publishing: at most this many written objects wait, or this many seconds.
_EARLY_BATCH = 2048
_EARLY_INTERVAL = 1.0


def _check_ref_binding(commit: Commit, ref: str | None, csum: Checksum) -> None:
    """A commit that names the refs it was made for must be pulled under one of them."""
    if ref is None:
        return
    bound = commit.get("ostree.ref-binding")
    if isinstance(bound, list) and bound and ref not in bound:
        raise RemoteError(
            f"commit {csum} is bound to ref(s) {', '.join(map(str, bound))}, not {ref!r}: refusing to pull it as {ref}"
        )


def _run_pull(
    repo: Repo,
    fetcher: Fetcher,
    url: str,
    targets: list[PullTarget],
    *,
    content_url: str | None,
    local_ref: Callable[[str], str],
    config: PullConfig,
    depth: int,
    commit_metadata_only: bool,
    mirror_all: bool,
    dry_run: bool,
    progress: Callable[[PullEvent], None] | None,
    check_config: bool,
    content_format: str = _FILEZ,
) -> PullResult:
    start = time.monotonic()
    p = _Puller(
        repo,
        fetcher,
        url,
        content_url=content_url,
        config=config,
        progress=progress,
        dry_run=dry_run,
        metadata_only=commit_metadata_only,
        content_format=content_format,
    )
    p.emit("refs", None, force=True)
    if check_config:
        p.check_remote_config()
    summary: Summary | None = None
    summary_bytes: bytes | None = None
    need_summary = mirror_all or any(t.commit is None for t in targets)
    if need_summary:
        summary, summary_bytes = p.fetch_summary()
    if mirror_all:
        if summary is None:
            raise RemoteError(f"{url} has no summary: name the refs to mirror")
        targets = [PullTarget(r.name) for r in summary.refs]
    ref_files: dict[str, Checksum] = {}
    if summary is None:
        for t in targets:
            if t.commit is None and t.ref is not None:
                found = p.fetch_ref_file(t.ref)
                if found is not None:
                    ref_files[t.ref] = found
    resolved = resolve_targets(targets, summary, ref_files)
    commits: dict[Checksum, int] = {}
    for t, csum in resolved.items():
        commits[csum] = depth
        if t.ref is not None:
            p.refs_of.setdefault(csum, []).append(t.ref)
    txn_cm = repo.transaction() if not dry_run else None
    refs_out: list[tuple[str, Checksum]] = []
    if txn_cm is None:
        plan = p.walk(None, commits)
    else:
        with txn_cm as txn:
            try:
                plan = p.walk(txn, commits)
            except BaseException:
                # Keep what was verified, so a rerun resumes; refs stay as they were.
                try:
                    txn.checkpoint()
                except BootreeError as e:  # pragma: no cover - disk trouble on top of the first
                    log.warning("could not keep partial pull: %s", e)
                raise
            log.info("all objects verified and staged after %.2f s; publishing", time.monotonic() - start)
            if not commit_metadata_only:
                for c in plan.walked_commits:
                    txn.clear_partial(c)
            for t, csum in resolved.items():
                if t.ref is None:
                    continue
                name = local_ref(t.ref)
                refs_out.append((name, csum))
                if repo.refs.get(name) != csum:
                    txn.set_ref(name, csum)
        if mirror_all and summary_bytes is not None:
            _fs.write_atomic(repo.path / "summary", summary_bytes, fsync=repo.fsync)
            sig = p.fetch_optional("summary.sig", config.max_small_file_size)
            if sig is not None:
                _fs.write_atomic(repo.path / "summary.sig", sig, fsync=repo.fsync)
            else:
                (repo.path / "summary.sig").unlink(missing_ok=True)
    if dry_run:
        refs_out = [(local_ref(t.ref), c) for t, c in resolved.items() if t.ref is not None]
    p.emit("done", plan, force=True)
    return PullResult(
        refs=tuple(refs_out),
        metadata_fetched=p.metadata_fetched if not dry_run else plan.fetch_metadata,
        content_fetched=p.content_fetched if not dry_run else plan.fetch_content,
        bytes_fetched=p.bytes,
        requests=fetcher.stats.requests,
        seconds=time.monotonic() - start,
        dry_run=dry_run,
        content_bytes=p.content_bytes,
    )


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
) -> PullResult:
    """Pull ``refs`` (``REF``, ``REF@COMMIT`` or ``COMMIT``) from ``remote`` into ``repo``.

    Without refs: all the remote's refs with ``mirror``, else the remote's ``branches=``.
    Refs land in ``refs/remotes/REMOTE/`` (``refs/heads/`` with ``mirror``).

    Raises:
        VerificationError: the remote requires GPG or signature verification (not implemented).
        RemoteError: no refs to pull, a remote that is not an archive repository, a bad summary.
        RefNotFound: a ref the remote does not have.
        FetchError: a download that failed for good (NotFoundError for a missing object).
        ChecksumMismatch, CorruptObject: the server sent wrong bytes.
    """
    cfg = config or PullConfig()
    targets = parse_pull_refs(refs)
    mirror_all = mirror and not targets
    if not targets and not mirror_all:
        targets = parse_pull_refs(remote.branches)
        if not targets:
            raise RemoteError(f"no refs given and remote {remote.name!r} has no 'branches' configured")
    if not remote.url:
        raise RemoteError(f"remote {remote.name!r} has no url")
    # Fail closed, as ostree does when it cannot verify: never pull unverified content from a
    # remote whose config asks for signatures.
    for key in ("gpg-verify", "sign-verify"):
        if remote.get_bool(key, key == "gpg-verify"):
            raise VerificationError(
                f"remote {remote.name!r} requires {key.split('-')[0].upper()} signature verification, "
                "which bootree does not implement yet",
                hint=f"set {key}=false for this remote (e.g. 'bootree remote add --no-gpg-verify ...')",
            )
    own = fetcher is None
    f = fetcher or open_fetcher(remote.url, remote.fetch_config(cfg.fetch))
    try:
        return _run_pull(
            repo,
            f,
            remote.url,
            targets,
            content_url=remote.content_url,
            local_ref=(lambda r: r) if mirror else (lambda r: f"{remote.name}:{r}"),
            config=cfg,
            depth=depth,
            commit_metadata_only=commit_metadata_only,
            mirror_all=mirror_all,
            dry_run=dry_run,
            progress=progress,
            check_config=True,
        )
    finally:
        if own:
            f.close()


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
) -> PullResult:
    """Copy ``refs`` (default: all local branches) from the repository at ``source``.

    Every object is verified as with a network pull. Refs land in ``refs/heads/`` (or under
    ``remote`` if given), as ``ostree pull-local`` does.

    Raises:
        RepoNotFound: if ``source`` is not a repository.
        RefNotFound: a ref the source does not have.
        ChecksumMismatch, CorruptObject: the source holds corrupt objects.
    """
    from bootree.pull.local import LocalRepoFetcher

    cfg = config or PullConfig()
    src = Repo.open(source)
    targets = parse_pull_refs(refs)
    if not targets:
        targets = [PullTarget(r) for r in src.list_refs() if ":" not in r]
    resolved: list[PullTarget] = []
    for t in targets:
        if t.commit is None and t.ref is not None:
            resolved.append(PullTarget(t.ref, src.resolve_rev(t.ref)))
        else:
            resolved.append(t)
    fetcher = LocalRepoFetcher(src)
    try:
        return _run_pull(
            repo,
            fetcher,
            fetcher.base_url,
            resolved,
            content_url=None,
            local_ref=(lambda r: f"{remote}:{r}") if remote else (lambda r: r),
            config=cfg,
            depth=depth,
            commit_metadata_only=commit_metadata_only,
            mirror_all=False,
            dry_run=dry_run,
            progress=progress,
            check_config=False,
            content_format=_FILEZ if src.mode is RepoMode.ARCHIVE else _STREAM,
        )
    finally:
        fetcher.close()
