"""Layers download a few at a time, ahead of the import, and stop when it fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bootree.errors import RegistryError
from bootree.format.oci import Descriptor
from bootree.oci.fetch import DOWNLOADS, LayerFetcher
from bootree.oci.progress import LayerTask
from bootree.oci.registry import BlobStats, BytesFn, Fetched


class SlowSource:
    """An ImageSource whose blobs take a while and which records how many run at once."""

    def __init__(self, fail: str | None = None) -> None:
        self.stats = BlobStats()
        self.lock = threading.Lock()
        self.running = self.peak = 0
        self.started: list[str] = []
        self.fail = fail

    def manifest(self, reference: str | None) -> Fetched:
        raise NotImplementedError

    def blob_bytes(self, desc: Descriptor) -> bytes:
        raise NotImplementedError

    def local_blob(self, desc: Descriptor) -> Path | None:
        return None

    def fetch_blob(self, desc: Descriptor, dest: Path, on_bytes: BytesFn | None = None) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(desc.digest)
        try:
            for i in range(5):
                time.sleep(0.02)
                if on_bytes is not None:
                    on_bytes(i * desc.size // 5)
            if desc.digest == self.fail:
                raise RegistryError(desc.digest, "HTTP 500", status=500)
            dest.write_bytes(b"x" * desc.size)
        finally:
            with self.lock:
                self.running -= 1

    def close(self) -> None:
        pass


def _layers(n: int) -> list[tuple[Descriptor, LayerTask]]:
    out = []
    for i in range(n):
        d = Descriptor("application/vnd.oci.image.layer.v1.tar", f"sha256:{i:064x}", 100 + i)
        out.append((d, LayerTask(d.digest, d.size, "layer")))
    return out


def test_downloads_run_in_parallel_bounded_and_in_order(tmp_path: Path) -> None:
    src = SlowSource()
    layers = _layers(10)
    with LayerFetcher(src, tmp_path, layers) as f:
        time.sleep(0.3)
        # Not more than two windows' worth ahead of an import that has taken nothing yet.
        assert len(src.started) <= 2 * DOWNLOADS
        for d, _ in layers:
            blob = f.get(d)
            assert blob.path.stat().st_size == d.size and blob.downloaded
    assert 2 <= src.peak <= DOWNLOADS
    # Started in order, give or take the threads' race to the lock: never a layer far ahead.
    order = [d.digest for d, _ in layers]
    assert sorted(src.started) == order
    assert all(abs(order.index(x) - i) < DOWNLOADS for i, x in enumerate(src.started))


def test_a_failed_download_surfaces_in_get_and_stops_the_rest(tmp_path: Path) -> None:
    layers = _layers(12)
    src = SlowSource(fail=layers[1][0].digest)
    with pytest.raises(RegistryError, match="HTTP 500"), LayerFetcher(src, tmp_path, layers) as f:
        for d, _ in layers:
            f.get(d)
    assert len(src.started) < len(layers), "queued downloads are dropped once the import stops"
