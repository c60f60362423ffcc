"""The write half of the pull engine: the writer thread, early publishing, streamed objects.

Layer: pull. Everything here receives values that are already verified
(:class:`~bootree.format.verified.VerifiedMetadata` / ``VerifiedContent``) or verifies as it
writes (:class:`StreamedObject`, over the repository's ``stream_content`` writer), and hands them
to the one :class:`~bootree.repo.transaction.Transaction` of the pull.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming
from bootree.format.objects import FileHeader
from bootree.format.verified import VerifiedContent, VerifiedMetadata
from bootree.repo.transaction import Transaction
from bootree.repo.writers import ReceivedContentWriter

__all__ = ["EarlyPublisher", "StreamedObject", "WriteJob", "WriterThreads"]

log = logging.getLogger(__name__)

#: Early publishing: at most this many written objects wait, or this many seconds.
EARLY_BATCH = 2048
EARLY_INTERVAL = 1.0


class StreamedObject:
    """A content object written to its staging file as it arrives (a ``BodyStream``).

    Implements :class:`bootree.transport.BodyStream` over the repository's verifying
    :class:`~bootree.repo.writers.ReceivedContentWriter`, so a large object is never held in
    memory. A failure while writing (a full disk, bytes that do not inflate) is recorded, the
    rest of the body discarded, and reported by :meth:`finish` once the download completes: the
    fetcher's thread never sees it, so it cannot be mistaken for a network fault.
    """

    def __init__(
        self,
        txn: Transaction,
        framing: ContentFraming,
        expected: Checksum,
        check: Callable[[Checksum, FileHeader], None] | None = None,
    ) -> None:
        self.checksum = expected
        #: A check of the object's header before it is staged (``--bareuseronly-files``).
        self.check = check
        self.error: BaseException | None = None
        self._writer: ReceivedContentWriter | None = None
        try:
            self._writer = txn.stream_content(framing, expected)
        except BaseException as e:  # reported by finish(), like a failed write
            self.error = e
        #: Bytes received.
        self.received = 0

    def write(self, chunk: bytes | memoryview) -> None:
        """Decode, hash and write the next piece (errors are kept for :meth:`finish`)."""
        self.received += len(chunk)
        if self._writer is None or self.error is not None:
            return
        try:
            self._writer.write(chunk)
        except BaseException as e:  # reported by finish(); the writer removed its file
            self.error = e

    def abort(self) -> None:
        """Remove the partial file and release the claim."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def finish(self) -> None:
        """Verify the whole object and stage it.

        Raises:
            CorruptObject, ChecksumMismatch: bad bytes; OSError: a failed write.
        """
        if self.error is not None:
            self.abort()
            raise self.error
        assert self._writer is not None
        if self.check is not None and self._writer.header is not None:
            try:
                self.check(self.checksum, self._writer.header)
            except BaseException:
                self.abort()
                raise
        try:
            self._writer.finish()
        finally:
            self._writer = None


@dataclass(frozen=True, slots=True)
class WriteJob:
    """One object for the writer thread, with the bytes it held in memory (``size``)."""

    otype: ObjectType
    checksum: Checksum
    size: int
    meta: VerifiedMetadata | None = None
    content: VerifiedContent | None = None
    #: A ``.filez`` that the repository verifies as it stores it (archive to archive).
    archived: bytes | None = None
    #: A streamed object whose bytes are written already: verify and stage it.
    streamed: StreamedObject | None = None
    #: A local ``.filez`` to hardlink (verified as linked), copied if the link is refused.
    link_from: str | None = None


class WriterThreads:
    """The thread(s) that create object files; ``done(error, size)`` is called after each job.

    Measured on ext4 here: two threads creating files at once take twice the system time of
    one and finish later than one thread doing both halves, so verification is parallel and
    file creation is serial. :attr:`busy` (seconds spent writing) and :attr:`written` (bytes)
    tell the engine's buffer budget what the writer absorbs.
    """

    def __init__(
        self,
        txn: Transaction,
        done: Callable[[BaseException | None, int], None],
        threads: int = 1,
        publisher: EarlyPublisher | None = None,
    ) -> None:
        self.txn = txn
        self.done = done
        self.publisher = publisher
        self.busy = 0.0
        self.written = 0
        self.queue: queue.SimpleQueue[WriteJob | None] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._run, name=f"bootree-writer-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for t in self.threads:
            t.start()

    def put(self, job: WriteJob) -> None:
        """Queue a job."""
        self.queue.put(job)

    def close(self) -> None:
        """Finish the queued jobs, stop the threads and the publisher."""
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
                if job.content is not None:
                    txn.write_content(job.content)
                elif job.meta is not None:
                    txn.write_metadata(job.meta)
                elif job.streamed is not None:
                    job.streamed.finish()
                elif job.link_from is not None:
                    if not txn.link_archived_file(job.link_from, job.checksum):
                        _copy_archived(txn, job.link_from, job.checksum)
                else:  # archive to archive: verified by the repository as it is stored
                    assert job.archived is not None
                    txn.write_archived_file(job.archived, expected=job.checksum)
            except BaseException as e:  # reported to the main loop
                error = e
            else:
                if self.publisher is not None and job.otype is ObjectType.FILE:
                    self.publisher.add(job.checksum)
            self.busy += time.perf_counter() - t0
            self.written += job.size
            self.done(error, job.size)


class EarlyPublisher:
    """Publishes written content objects in batches while the pull goes on.

    Without it, every object of a pull waits for the end: one ``syncfs`` for all the data, then
    one rename per object, about 0.6 s for the benchmark corpus with nothing else to do. Here a
    thread flushes and renames what the writer has finished every second (or every
    :data:`EARLY_BATCH` objects), overlapping that with the download; see
    :meth:`Transaction.publish_early` and ``docs/adr/0003-early-publishing.md`` for why this is
    safe. What is left at the end is published by the transaction's commit as before.
    """

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn
        self.error: BaseException | None = None
        self._ready: list[Checksum] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._batch = EARLY_BATCH
        self._interval = EARLY_INTERVAL
        self._thread = threading.Thread(target=self._run, name="bootree-publish", daemon=True)
        self._thread.start()

    def add(self, csum: Checksum) -> None:
        """Record a content object the writer has completely written."""
        with self._lock:
            self._ready.append(csum)
            if len(self._ready) >= self._batch:
                self._wake.set()

    def close(self) -> None:
        """Stop (objects not yet published stay staged for the commit)."""
        self._closing = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._closing:
                return
            with self._lock:
                batch, self._ready = self._ready, []
            if not batch:
                continue
            try:
                self.txn.publish_early(ObjectType.FILE, batch)
            except BaseException as e:  # reported by the engine at the end of the walk
                self.error = e
                return


def _copy_archived(txn: Transaction, path: str, csum: Checksum) -> None:
    """Copy a local ``.filez`` through the verifying writer (a refused hardlink's fallback)."""
    with open(path, "rb") as f, txn.stream_content(ContentFraming.ARCHIVED, csum) as w:
        while chunk := f.read(1 << 20):
            w.write(chunk)
        w.finish()
