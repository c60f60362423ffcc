"""Layer streams (decompressed in their own thread) and the bounded write pool."""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from pathlib import Path

import pytest

from bootree.errors import LayerError
from bootree.format.oci import Compression, Descriptor
from bootree.oci.stream import LayerStream, WritePool

DATA = b"".join(hashlib.sha256(str(i).encode()).digest() * 97 for i in range(4000))  # ~12 MB


def _diff_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _read_all(path: Path, compression: str, verify: Descriptor | None = None) -> tuple[bytes, str]:
    with LayerStream(path, compression, verify=verify) as s:
        parts = []
        while chunk := s.read(10240):
            parts.append(chunk)
        return b"".join(parts), s.finish()


def test_multi_member_gzip_with_zero_padding(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    third = len(DATA) // 3
    p.write_bytes(gzip.compress(DATA[:third]) + gzip.compress(DATA[third:]) + b"\0" * 1024)
    data, diff_id = _read_all(p, Compression.GZIP)
    assert data == DATA and diff_id == _diff_id(DATA)


def test_highly_compressible_gzip_is_inflated_in_bounded_chunks(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    zeros = b"\0" * (64 << 20)
    p.write_bytes(gzip.compress(zeros, 1))
    with LayerStream(p, Compression.GZIP) as s:
        n = 0
        while chunk := s.read(1 << 20):
            assert len(chunk) <= 1 << 20
            n += len(chunk)
        assert s.finish() == _diff_id(zeros) and n == len(zeros)


def test_multi_frame_zstd(tmp_path: Path) -> None:
    import zstandard

    c = zstandard.ZstdCompressor()
    p = tmp_path / "blob"
    p.write_bytes(b"".join(c.compress(DATA[i : i + 1_000_000]) for i in range(0, len(DATA), 1_000_000)))
    assert _read_all(p, Compression.ZSTD) == (DATA, _diff_id(DATA))


def test_truncated_gzip_fails(tmp_path: Path) -> None:
    blob = gzip.compress(DATA)
    p = tmp_path / "blob"
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(LayerError, match=r"truncated|bad gzip"):
        _read_all(p, Compression.GZIP)


def test_truncated_zstd_is_caught_by_the_diff_id(tmp_path: Path) -> None:
    """python-zstandard ends a cut stream quietly; the diff_id (and a blob's digest) catch it."""
    import zstandard

    blob = zstandard.ZstdCompressor().compress(DATA)
    p = tmp_path / "blob"
    p.write_bytes(blob[: len(blob) // 2])
    data, diff_id = _read_all(p, Compression.ZSTD)
    assert len(data) < len(DATA) and diff_id != _diff_id(DATA)
    full = Descriptor("application/vnd.oci.image.layer.v1.tar+zstd",
                      "sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    with pytest.raises(LayerError, match="does not match its digest"):
        _read_all(p, Compression.ZSTD, full)


def test_blob_read_in_place_is_verified(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    p.write_bytes(DATA)
    good = Descriptor("application/vnd.oci.image.layer.v1.tar", "sha256:" + hashlib.sha256(DATA).hexdigest(),
                      len(DATA))
    assert _read_all(p, Compression.NONE, good)[0] == DATA
    bad = Descriptor(good.media_type, "sha256:" + "0" * 64, len(DATA))
    with pytest.raises(LayerError, match="does not match its digest"):
        _read_all(p, Compression.NONE, bad)


def test_closing_early_stops_the_thread(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    p.write_bytes(gzip.compress(DATA))
    s = LayerStream(p, Compression.GZIP)
    assert s.read(100)
    s.close()
    assert not s._thread.is_alive()


def test_write_pool_bounds_bytes_in_flight() -> None:
    gate = threading.Event()
    submitted: list[int] = []

    def work(n: int) -> int:
        gate.wait(5)
        return n

    with WritePool(workers=2, max_bytes=100) as pool:
        first = pool.submit(80, work, 1)

        def more() -> None:
            pool.submit(80, work, 2)
            submitted.append(2)

        t = threading.Thread(target=more)
        t.start()
        time.sleep(0.2)
        assert submitted == [], "a submit over the bound waits for earlier writes"
        gate.set()
        t.join(5)
        assert submitted == [2] and first.result() == 1
