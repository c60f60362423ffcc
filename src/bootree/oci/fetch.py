"""Layer blobs fetched a few at a time, ahead of the import that takes them in order.

Layer: oci. bootc fetches one layer at a time and imports it while it streams; bootree keeps
up to :data:`DOWNLOADS` downloads running (the link is rarely the limit for one stream: a
registry's per-connection rate and TLS are) while the import works through the earlier
layers. At most ``2 × DOWNLOADS`` blobs are fetched ahead of the import, so the disk holds a
bounded number of blobs, not the whole image. Blobs go to the repository's
``tmp/bootree-oci/`` (same file system; an interrupted one resumes there); an ``oci:`` layout's
blobs are read in place and verified while they are imported. A zstd:chunked layer from a
registry, when the repository holds an earlier image, is not downloaded but rebuilt as its
uncompressed tar by :mod:`bootree.oci.partial` (only the files the repository lacks are fetched).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bootree.errors import BootreeError
from bootree.format.oci import Compression, Descriptor
from bootree.oci.partial import PartialFetcher
from bootree.oci.progress import LayerTask, PullProgress
from bootree.oci.source import ImageSource

__all__ = ["DOWNLOADS", "FetchedBlob", "LayerFetcher"]

#: Downloads at once.
DOWNLOADS = 3


class _Cancelled(BootreeError):
    """The import stopped: running downloads end at their next chunk (partial files stay)."""


@dataclass(frozen=True, slots=True)
class FetchedBlob:
    """A layer's blob on disk."""

    path: Path
    verify: Descriptor | None
    """The descriptor to check the blob against while reading it (a blob read in place)."""
    downloaded: bool
    compression: str | None = None
    """The file's compression when it is not the layer's (a zstd:chunked layer rebuilt as a
    plain tar by a partial pull)."""


class LayerFetcher:
    """Fetch ``layers`` (each digest once) in the background; :meth:`get` waits for one."""

    def __init__(self, source: ImageSource, blobdir: Path, layers: Sequence[tuple[Descriptor, LayerTask]], *,
                 progress: PullProgress | None = None, workers: int = DOWNLOADS,
                 partial: PartialFetcher | None = None) -> None:
        self.source = source
        self.partial = partial
        self.blobdir = blobdir
        self.progress = progress
        self._tasks = {d.digest: (d, t) for d, t in layers}
        self._order = list(self._tasks)
        self._futures: dict[str, Future[FetchedBlob]] = {}
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="bootree-oci-fetch") if self._order else None
        self._window = 2 * workers
        self._next = 0
        self._taken = 0
        self._stop = threading.Event()
        self.downloaded = 0
        self._fill()

    def _fill(self) -> None:
        while self._pool is not None and self._next < len(self._order) and self._next - self._taken < self._window:
            digest = self._order[self._next]
            if digest not in self._futures:
                self._futures[digest] = self._pool.submit(self._fetch, *self._tasks[digest])
            self._next += 1

    def _fetch(self, desc: Descriptor, task: LayerTask) -> FetchedBlob:
        if self._stop.is_set():
            raise _Cancelled("import stopped")
        if self.progress is not None:
            self.progress.layer_started(task)
        local = self.source.local_blob(desc)
        if local is not None:
            result = FetchedBlob(local, desc, False)
        else:
            path = self.blobdir / desc.digest.replace(":", "-")

            def on_bytes(n: int) -> None:
                if self._stop.is_set():
                    raise _Cancelled("import stopped")
                if self.progress is not None:
                    self.progress.layer_bytes(task, n)

            tar = path.with_name(path.name + ".tar")
            if not path.exists() and self.partial is not None and self.partial.fetch(desc, tar, on_bytes):
                result = FetchedBlob(tar, None, True, Compression.NONE)
            else:
                if not path.exists():
                    self.source.fetch_blob(desc, path, on_bytes)
                result = FetchedBlob(path, None, True)
        if self.progress is not None:
            self.progress.layer_bytes(task, desc.size)
            self.progress.layer_done(task)
        return result

    def get(self, desc: Descriptor) -> FetchedBlob:
        """The blob of ``desc`` (one of the layers), once it is complete.

        Raises:
            RegistryError, ImageError: the download's own error.
        """
        fut = self._futures.get(desc.digest)
        if fut is None:  # taken out of order: start it now
            fut = self._futures[desc.digest] = self._submit_now(desc)
        else:
            self._taken += 1
            self._fill()
        result = fut.result()
        if result.downloaded:
            self.downloaded += 1
        return result

    def _submit_now(self, desc: Descriptor) -> Future[FetchedBlob]:
        assert self._pool is not None, "get() of a layer that was not asked for"
        return self._pool.submit(self._fetch, *self._tasks[desc.digest])

    def close(self) -> None:
        """Stop: queued downloads are dropped, running ones end at their next chunk."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LayerFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
