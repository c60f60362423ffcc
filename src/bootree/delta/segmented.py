"""Rebuilding a segmented gzip object (bootree's ``G`` with a segment list) while its
contents are still being assembled.

Layer: delta. A large gzip object (the corpus's 61 MB initramfs) is recompressed in pieces
that start at clean deflate block boundaries (:mod:`bootree.format.deflatesplit`); its
compression is most of a bootree delta's CPU time. Waiting for the whole contents before the
first piece starts, and joining, hashing and writing the 28 MB result after the last one,
were serial steps on the critical path. Here:

* the contents go into one buffer of the declared size as the delta's writes produce them,
  and each piece is handed to the worker pool as soon as the bytes it reads (its window, its
  range and the look-ahead margin) are in place, so compression starts while the rest of the
  contents is still being copied;
* each piece, once compressed, waits for its predecessor and then streams its bits into the
  object's verified writer (:meth:`bootree.repo.Transaction.content_writer`), updating the
  gzip trailer's CRC over its range: the object is hashed and written piece by piece, in
  order, on whichever worker finished, and nothing is joined at the end.

The pool must run tasks first in, first out (a ``ThreadPoolExecutor``): when a piece waits
for its predecessor, that one has already started, so the chain always completes. The object
is staged only if its checksum matches (the writer verifies it); any failure aborts the
writer and is raised by the failing piece's future.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from bootree.errors import DeltaFormatError
from bootree.format.checksum import Checksum
from bootree.format.deflatesplit import MARGIN, BitJoiner
from bootree.format.objects import FileHeader
from bootree.format.recompress import GzipParams, gzip_segment, gzip_segment_jobs
from bootree.repo import Transaction

__all__ = ["SegmentedGzip"]


class SegmentedGzip:
    """One segmented gzip object being rebuilt: fed by :meth:`add`, ended by :meth:`close`."""

    def __init__(
        self, txn: Transaction, header: FileHeader, size: int, csum: Checksum, params: GzipParams,
        inner_size: int, pool: ThreadPoolExecutor, on_done: Callable[[Checksum], None],
    ) -> None:
        self.csum = csum
        self._params = params
        self._pool = pool
        self._on_done = on_done
        self._buf = bytearray(inner_size)
        self._view = memoryview(self._buf)
        self._filled = 0
        self._jobs = gzip_segment_jobs(params, inner_size)
        self._submitted = 0
        #: ``_turns[k]`` is set once piece ``k`` has been written (or has failed)
        self._turns = [threading.Event() for _ in self._jobs]
        self._failed = False
        self._joiner = BitJoiner()
        self._crc = 0
        self._writer = txn.content_writer(header, size, csum)
        #: one per piece, in order; the failing piece's raises
        self.futures: list[Future[None]] = []

    def add(self, chunk: bytes | memoryview) -> None:
        """Append the next bytes of the contents (the delta's writes, in order).

        Raises:
            DeltaFormatError: if the writes pass the declared contents size.
        """
        n = len(chunk)
        if self._filled + n > len(self._buf):
            raise DeltaFormatError(f"delta writes pass the {len(self._buf)} bytes declared for object {self.csum}")
        self._view[self._filled : self._filled + n] = chunk
        self._filled += n
        self._submit_ready()

    def close(self) -> list[Future[None]]:
        """All contents given: the pieces' futures (every piece is submitted by now).

        Raises:
            DeltaFormatError: if the writes fell short of the declared contents size.
        """
        if self._filled != len(self._buf):
            self._writer.abort()
            raise DeltaFormatError(
                f"delta writes give {self._filled} of the {len(self._buf)} bytes declared for object {self.csum}"
            )
        self._submit_ready()
        return self.futures

    def abort(self) -> None:
        """Give up before :meth:`close` (the delta failed while the contents were built)."""
        self._failed = True
        if not self.futures:
            self._writer.abort()

    def _submit_ready(self) -> None:
        size = len(self._buf)
        while self._submitted < len(self._jobs):
            _start, end, nbits = self._jobs[self._submitted]
            need = size if nbits is None else min(size, end + MARGIN)
            if self._filled < need:
                return
            self.futures.append(self._pool.submit(self._piece, self._submitted))
            self._submitted += 1

    def _piece(self, k: int) -> None:
        """Worker: compress piece ``k``, then write it after piece ``k - 1``."""
        error: BaseException | None = None
        data, count = b"", 0
        try:
            data, count = gzip_segment(self._view, self._params, self._jobs[k])
        except BaseException as exc:  # reported below, once the previous piece is done with the writer
            error = exc
        if k:
            self._turns[k - 1].wait()
        try:
            if self._failed:
                return  # an earlier piece failed and reports it
            if error is not None:
                raise error
            self._emit(k, data, count)
        except BaseException:
            self._failed = True
            self._writer.abort()
            raise
        finally:
            self._turns[k].set()

    def _emit(self, k: int, data: bytes, count: int) -> None:
        writer = self._writer
        start, end, nbits = self._jobs[k]
        if k == 0:
            writer.write(self._params.header)
        writer.write(self._joiner.add(data, count))
        self._crc = zlib.crc32(self._view[start:end], self._crc)
        if nbits is None:  # the last piece: trailer, then verify and stage
            size = len(self._buf)
            writer.write(self._joiner.flush() + struct.pack("<II", self._crc, size & 0xFFFFFFFF))
            writer.finish()
            self._view, self._buf = memoryview(b""), bytearray()  # the contents are no longer needed
            self._on_done(self.csum)
