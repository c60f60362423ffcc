"""Layer blobs as decompressed streams, and the bounded pool that writes their objects.

Layer: oci. An import keeps both cores busy, as :mod:`bootree.repo.commit` does:

* :class:`LayerStream` runs a decompression thread: it reads the blob, hashes the compressed
  bytes when the fetcher has not verified them already (an ``oci:`` layout is read in place),
  inflates (gzip with zlib-ng, zstd with zstandard; both release the GIL), hashes the tar
  bytes for the diff_id, and hands 1 MiB chunks to the parsing thread through a queue of a few
  chunks, so memory stays flat whatever the layer's size;
* the calling thread parses tar headers (:class:`~bootree.format.tar.TarReader`, straight
  out of those chunks: no copy of the stream, bodies as slices of it), and submits object
  writes to a :class:`WritePool`, whose threads hash, compress and write (hashlib and zlib release the GIL too). The bytes in
  flight are bounded: a slow disk slows the parser down instead of filling memory.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from bootree.errors import BootreeError, FormatError, LayerError
from bootree.format.oci import Compression, Descriptor
from bootree.format.tar import TarEntry, TarReader
from bootree.repo.contentio import DECOMPRESSOBJ, INFLATE_ERRORS

__all__ = ["LayerStream", "WritePool", "pool_size", "read_layer"]

T = TypeVar("T")

_CHUNK = 1 << 20
_RAW_CHUNK = 256 << 10
_QUEUE_DEPTH = 8
_END = b""


def pool_size() -> int:
    """Writer threads: one per core, at least two (as commit uses)."""
    return max(2, os.cpu_count() or 2)


class _HashingFile:
    """The raw blob, hashed and counted as the decompressor reads it."""

    def __init__(self, f: BinaryIO, hasher: Any) -> None:
        self.f = f
        self.hasher = hasher
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n if n >= 0 else _RAW_CHUNK)
        if self.hasher is not None:
            self.hasher.update(data)
        self.size += len(data)
        return data


class LayerStream:
    """A read-only stream of a layer's tar bytes, decompressed by a thread of its own.

    ``verify`` (a descriptor) makes the stream also check the blob's size and sha256; a
    mismatch surfaces from :meth:`finish`. Use as a context manager; :meth:`finish` reads
    what the tar parser left (the end-of-archive padding), waits for the thread and returns
    the diff_id.
    """

    def __init__(self, path: Path, compression: str, *, verify: Descriptor | None = None) -> None:
        self.path = path
        self.compression = compression
        self.verify = verify
        self._q: queue.Queue[bytes] = queue.Queue(_QUEUE_DEPTH)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._diff = hashlib.sha256()
        self._blob_hash = hashlib.sha256() if verify is not None else None
        self._raw: _HashingFile | None = None
        self._buf = memoryview(b"")
        self._eof = False
        self.tar_bytes = 0
        self._thread = threading.Thread(target=self._run, name="bootree-oci-inflate", daemon=True)
        self._thread.start()

    # --- the decompression thread --------------------------------------------------------

    def _put(self, item: bytes) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _emit(self, data: bytes) -> None:
        if data:
            self._diff.update(data)
            self.tar_bytes += len(data)
            self._put(data)

    def _run(self) -> None:
        try:
            with open(self.path, "rb") as f:
                self._raw = raw = _HashingFile(f, self._blob_hash)
                if self.compression == Compression.GZIP:
                    self._gunzip(raw)
                elif self.compression == Compression.ZSTD:
                    self._unzstd(raw)
                else:
                    for chunk in iter(lambda: raw.read(_CHUNK), b""):
                        self._emit(chunk)
        except BaseException as e:
            self._error = e
        finally:
            self._put(_END)

    def _gunzip(self, raw: _HashingFile) -> None:
        d = DECOMPRESSOBJ(31)
        started = False
        try:
            for data in iter(lambda: raw.read(_RAW_CHUNK), b""):
                while data:
                    if not started and not data.strip(b"\0"):
                        data = b""  # zero padding after the last member
                        break
                    started = True
                    self._emit(d.decompress(data, _CHUNK))
                    if d.eof:  # a multi-member gzip: the next member starts right after
                        data, d, started = d.unused_data, DECOMPRESSOBJ(31), False
                    else:
                        data = d.unconsumed_tail
                while started and not d.eof:  # output held back by max_length
                    out = d.decompress(d.unconsumed_tail, _CHUNK)
                    if not out:
                        break
                    self._emit(out)
        except INFLATE_ERRORS as e:
            raise LayerError(f"layer {self.path.name}: bad gzip data: {e}") from None
        if started and not d.eof:
            raise LayerError(f"layer {self.path.name}: gzip stream is truncated")

    def _unzstd(self, raw: _HashingFile) -> None:
        import zstandard  # only zstd layers need it

        try:
            # read_across_frames: zstd:chunked blobs have many frames (and skippable ones).
            with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False) as r:  # type: ignore[arg-type]
                for chunk in iter(lambda: r.read(_CHUNK), b""):
                    self._emit(chunk)
        except zstandard.ZstdError as e:
            raise LayerError(f"layer {self.path.name}: bad zstd data: {e}") from None

    # --- the reading side ----------------------------------------------------------------

    def _fail(self) -> None:
        err = self._error
        if err is not None:
            if isinstance(err, BootreeError):
                raise err
            raise LayerError(f"layer {self.path.name}: cannot read: {err}") from err

    def next_chunk(self) -> bytes:
        """The next piece of tar as the decompressor produced it (up to 1 MiB); ``b""`` at the end."""
        if self._buf:
            out = bytes(self._buf)
            self._buf = memoryview(b"")
            return out
        if self._eof:
            return b""
        item = self._q.get()
        if item is _END or not item:
            self._eof = True
            self._fail()
            return b""
        return item

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of tar (all that is left for ``n < 0``); ``b""`` at the end."""
        if n < 0:
            parts = []
            while chunk := self.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        while not self._buf:
            item = self.next_chunk()
            if not item:
                return b""
            self._buf = memoryview(item)
        out = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        return out

    def finish(self) -> str:
        """Read to the end, check the blob (when asked to) and return the diff_id.

        Raises:
            LayerError: bad compressed data, or a blob that does not match its descriptor.
        """
        while self.read(_CHUNK):
            pass
        self._thread.join()
        self._fail()
        if self.verify is not None and self._raw is not None and self._blob_hash is not None:
            got = "sha256:" + self._blob_hash.hexdigest()
            if self._raw.size != self.verify.size or got != self.verify.digest:
                raise LayerError(f"blob {self.verify.digest} does not match its digest or size "
                                 f"({self._raw.size} bytes, {got})")
        return "sha256:" + self._diff.hexdigest()

    def close(self) -> None:
        """Stop the thread (an import that failed half way)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WritePool:
    """Threads that write objects, with a bound on the bytes waiting for them.

    :meth:`submit` blocks while more than ``max_bytes`` of submitted data is unwritten. Leaving
    the ``with`` block waits for every write; on an exception, pending writes are cancelled.
    """

    def __init__(self, workers: int | None = None, max_bytes: int = 32 << 20) -> None:
        self._exec = ThreadPoolExecutor(workers or pool_size(), thread_name_prefix="bootree-oci-write")
        self._cond = threading.Condition()
        self._inflight = 0
        self.max_bytes = max_bytes

    def submit(self, nbytes: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in the pool; ``nbytes`` is what the call holds in memory."""
        with self._cond:
            while self._inflight and self._inflight + nbytes > self.max_bytes:
                self._cond.wait()
            self._inflight += nbytes

        def release(_: Future[T]) -> None:
            with self._cond:
                self._inflight -= nbytes
                self._cond.notify_all()

        fut = self._exec.submit(fn, *args)
        fut.add_done_callback(release)
        return fut

    def __enter__(self) -> WritePool:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._exec.shutdown(wait=True, cancel_futures=exc_type is not None)


MemberHandler = Callable[[TarEntry, TarReader], None]
"""Called for each member; it may read the member's body from the reader (or leave it)."""


def read_layer(path: Path, compression: str, diff_id: str | None, handle: MemberHandler, *,
               verify: Descriptor | None = None) -> str:
    """Stream a layer's tar through ``handle`` member by member; returns the diff_id.

    Raises:
        LayerError: a corrupt archive or compressed stream, a diff_id (or, with ``verify``, a
            blob digest) that does not match; whatever ``handle`` raises.
    """
    try:
        with LayerStream(path, compression, verify=verify) as stream:
            reader = TarReader(stream.next_chunk)
            try:
                for member in reader:
                    handle(member, reader)
            except FormatError as e:
                raise LayerError(f"layer {path.name}: cannot read tar: {e}") from None
            if reader.offset == 0:
                raise LayerError(f"layer {path.name}: cannot read tar: empty file")
            got = stream.finish()
    except BootreeError:
        if verify is not None:
            _check_blob(path, verify)  # a corrupt blob read in place: say so, not what it broke
        raise
    if diff_id is not None and got != diff_id:
        raise LayerError(f"layer {path.name}: uncompressed digest {got} does not match diff_id {diff_id}")
    return got


def _check_blob(path: Path, desc: Descriptor) -> None:
    """Raise if the blob at ``path`` is not ``desc`` (its size and sha256)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            n += len(chunk)
    got = "sha256:" + h.hexdigest()
    if n != desc.size or got != desc.digest:
        raise LayerError(f"blob {desc.digest} does not match its digest or size ({n} bytes, {got})")
