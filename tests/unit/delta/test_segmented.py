"""A segmented gzip object rebuilt while its contents arrive: pieces start before the contents
are complete, the object is written in order and verified, and bad input never stages it."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from bootree.delta import deflateblocks
from bootree.delta.recompress import find_params
from bootree.delta.segmented import SegmentedGzip
from bootree.errors import ChecksumMismatch, DeltaFormatError
from bootree.format.checksum import Checksum
from bootree.format.objects import FileHeader, ObjectType
from bootree.format.recompress import GzipParams
from bootree.repo import Repo, RepoMode
from delta_builders import initramfs_like

_HEADER = FileHeader(0, 0, 0o100644)


def _contents(size: int) -> bytes:
    return initramfs_like(size, 11)


@pytest.fixture
def gz(monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes, GzipParams, Checksum]:
    monkeypatch.setattr(deflateblocks, "_MIN_SPLIT", 1 << 18)
    monkeypatch.setattr(deflateblocks, "_PIECE", 1 << 18)
    inner = _contents(2 << 20)
    data = gzip.compress(inner, compresslevel=6, mtime=0)
    params = find_params(data, inner)
    assert isinstance(params, GzipParams) and len(params.segments) >= 3
    return inner, data, params, _HEADER.checksum(data)


def _chunks(inner: bytes, size: int = 100_000) -> Iterator[bytes]:
    for start in range(0, len(inner), size):
        yield inner[start : start + size]


def test_pieces_start_before_the_contents_are_complete(
    tmp_path: Path, gz: tuple[bytes, bytes, GzipParams, Checksum]
) -> None:
    inner, data, params, csum = gz
    repo = Repo.init(tmp_path / "r", mode=RepoMode.BARE_USER)
    done: list[Checksum] = []
    with repo.transaction() as txn, ThreadPoolExecutor(max_workers=2) as pool:
        rebuild = SegmentedGzip(txn, _HEADER, len(data), csum, params, len(inner), pool, done.append)
        started_early = 0
        for chunk in _chunks(inner):
            rebuild.add(chunk)
            started_early = max(started_early, len(rebuild.futures))
        futures = rebuild.close()
        assert len(futures) == len(params.segments) + 1
        # all but the pieces whose look-ahead reaches the end were handed out during the feed
        assert started_early >= len(params.segments) - 1
        for future in futures:
            future.result()
        assert done == [csum]
    assert repo.has_object(ObjectType.FILE, csum)
    assert repo.load_file(csum)[1] == data


def test_a_wrong_segment_list_is_refused_and_nothing_is_staged(
    tmp_path: Path, gz: tuple[bytes, bytes, GzipParams, Checksum]
) -> None:
    inner, data, params, csum = gz
    (off, bit), *rest = params.segments
    bad = GzipParams(params.header, params.level, params.mem_level, params.strategy, ((off + 1, bit), *rest))
    repo = Repo.init(tmp_path / "r", mode=RepoMode.BARE_USER)
    with pytest.raises(ChecksumMismatch), repo.transaction() as txn, ThreadPoolExecutor(max_workers=2) as pool:
        rebuild = SegmentedGzip(txn, _HEADER, len(data), csum, bad, len(inner), pool, lambda _c: None)
        for chunk in _chunks(inner):
            rebuild.add(chunk)
        errors = []
        for future in rebuild.close():
            try:
                future.result()
            except ChecksumMismatch as exc:
                errors.append(exc)
        assert len(errors) == 1  # the last piece's verification; the others just wrote
        raise errors[0]
    assert not repo.has_object(ObjectType.FILE, csum)


@pytest.mark.parametrize("extra", [1, -1])
def test_contents_of_the_wrong_size_are_refused(
    tmp_path: Path, gz: tuple[bytes, bytes, GzipParams, Checksum], extra: int
) -> None:
    inner, data, params, csum = gz
    repo = Repo.init(tmp_path / "r", mode=RepoMode.BARE_USER)
    with pytest.raises(DeltaFormatError), repo.transaction() as txn, ThreadPoolExecutor(max_workers=2) as pool:
        rebuild = SegmentedGzip(txn, _HEADER, len(data), csum, params, len(inner), pool, lambda _c: None)
        try:
            rebuild.add(inner + b"x" if extra > 0 else inner[:-1])
            rebuild.close()
        except DeltaFormatError:
            rebuild.abort()
            for future in rebuild.futures:
                future.result()  # pieces already handed out end without staging anything
            raise
    assert not repo.has_object(ObjectType.FILE, csum)


def test_a_failing_piece_stops_the_later_ones(
    tmp_path: Path, gz: tuple[bytes, bytes, GzipParams, Checksum], monkeypatch: pytest.MonkeyPatch
) -> None:
    inner, data, params, csum = gz
    import bootree.delta.segmented as segmented

    real = segmented.gzip_segment

    def failing(view: memoryview, p: GzipParams, job: tuple[int, int, int | None]) -> tuple[bytes, int]:
        if job[0] == params.segments[0][0]:
            raise OSError("piece 1 fails")
        return real(view, p, job)

    monkeypatch.setattr(segmented, "gzip_segment", failing)
    repo = Repo.init(tmp_path / "r", mode=RepoMode.BARE_USER)
    with pytest.raises(OSError, match="piece 1"), repo.transaction() as txn, ThreadPoolExecutor(max_workers=2) as pool:
        rebuild = SegmentedGzip(txn, _HEADER, len(data), csum, params, len(inner), pool, lambda _c: None)
        rebuild.add(inner)
        futures: list[Future[None]] = rebuild.close()
        outcomes = []
        for future in futures:
            try:
                future.result()
                outcomes.append("ok")
            except OSError:
                outcomes.append("failed")
        assert outcomes == ["ok", "failed"] + ["ok"] * (len(futures) - 2)  # later pieces just stop
        futures[1].result()
    assert not repo.has_object(ObjectType.FILE, csum)
