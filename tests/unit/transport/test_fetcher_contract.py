"""One contract, every fetcher: pipelined HTTP, httpx, file:// and the in-memory fetcher.

Each implementation writes only its single attempt; everything around it (the 404 mapping, the
size bound, retries, truncation, the counters, submit/wait) comes from
:mod:`bootree.transport.base`, and this suite proves they all behave the same. Fault cases run
against the fetchers that can be made to fail (a faulty HTTP server, the memory fetcher's armed
faults); a local file cannot answer 500.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faulty import Faults, faulty_server

from bootree.errors import FetchError, NotFoundError
from bootree.transport import FetchConfig, Fetcher
from bootree.transport.base import LowSpeedGuard
from bootree.transport.file import FileFetcher
from bootree.transport.http import PipelinedHttpFetcher
from bootree.transport.httpx_fetcher import HttpxFetcher
from bootree.transport.memory import FaultKind, MemoryFetcher

FAST = FetchConfig(read_timeout=0.5, connect_timeout=2.0, max_attempts=3, backoff_base=0.01, backoff_max=0.05)

_KINDS = {"500": FaultKind.STATUS, "truncate": FaultKind.TRUNCATE, "stall": FaultKind.STALL, "garble": FaultKind.GARBLE}


@dataclass
class Subject:
    fetcher: Fetcher
    base: str
    #: Arm a fault on a path suffix for ``count`` requests, or None if this fetcher cannot fail.
    fault: Callable[[str, str, int], None] | None

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


def _files(root: Path) -> dict[str, bytes]:
    out = {"small": b"hello\n", "big": b"x" * 300_000, "empty": b""}
    for i in range(100):
        out[f"sub/f{i}"] = bytes([i]) * (i * 37)
    for name, data in out.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return out


@contextlib.contextmanager
def _subject(kind: str, tmp_path: Path) -> Iterator[Subject]:
    root = tmp_path / "www"
    files = _files(root)
    if kind in ("pipelined", "httpx"):
        faults = Faults()
        with faulty_server(root, faults, stall_seconds=1.5) as srv:
            f: Fetcher = PipelinedHttpFetcher(FAST) if kind == "pipelined" else HttpxFetcher(FAST)
            try:
                yield Subject(f, srv.url, lambda s, k, n: faults.add(s, k, n))
            finally:
                f.close()
    elif kind == "file":
        f = FileFetcher(FAST)
        try:
            yield Subject(f, root.as_uri(), None)
        finally:
            f.close()
    else:
        mem = MemoryFetcher({f"mem://r/{k}": v for k, v in files.items()}, FAST)
        try:
            yield Subject(mem, "mem://r", lambda s, k, n: mem.add_fault(s, _KINDS[k], n))
        finally:
            mem.close()


@pytest.fixture(params=["pipelined", "httpx", "file", "memory"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    """Every fetcher."""
    with _subject(request.param, tmp_path) as s:
        yield s


@pytest.fixture(params=["pipelined", "httpx", "memory"])
def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    """Every fetcher whose remote can be made to fail (a local file cannot answer 500)."""
    with _subject(request.param, tmp_path) as s:
        yield s


def _arm(subject: Subject) -> Callable[[str, str, int], None]:
    assert subject.fault is not None
    return subject.fault


def test_fetch_and_submit_many(subject: Subject) -> None:
    f = subject.fetcher
    assert f.fetch(subject.url("small"), max_length=100) == b"hello\n"
    assert f.fetch(subject.url("empty"), max_length=100) == b""
    for i in range(100):
        f.submit(subject.url(f"sub/f{i}"), max_length=10_000, key=i)
    got = {}
    while f.pending:
        c = f.wait(timeout=10)
        assert c.error is None and c.data is not None
        got[c.key] = c.data
    assert got == {i: bytes([i]) * (i * 37) for i in range(100)}
    assert f.stats.requests >= 102
    assert f.stats.bytes >= sum(i * 37 for i in range(100))


def test_not_found_both_ways(subject: Subject) -> None:
    f = subject.fetcher
    with pytest.raises(NotFoundError):
        f.fetch(subject.url("nope"), max_length=100)
    f.submit(subject.url("nope"), max_length=100, key="k")
    c = f.wait(timeout=10)
    assert isinstance(c.error, NotFoundError) and c.key == "k" and c.data is None


def test_size_bound_is_final_and_recoverable(subject: Subject) -> None:
    f = subject.fetcher
    with pytest.raises(FetchError, match="too large") as info:
        f.fetch(subject.url("big"), max_length=1000)
    assert not info.value.transient and f.stats.retries == 0
    assert f.fetch(subject.url("small"), max_length=100) == b"hello\n"
    assert f.fetch(subject.url("small"), max_length=6) == b"hello\n"  # exactly the limit is fine


def test_wait_with_nothing_pending(subject: Subject) -> None:
    with pytest.raises(FetchError, match="no request pending"):
        subject.fetcher.wait(timeout=0.1)


def test_closed_fetcher_refuses(subject: Subject) -> None:
    subject.fetcher.close()
    with pytest.raises(FetchError, match="closed"):
        subject.fetcher.fetch(subject.url("small"), max_length=100)


def test_transient_status_retried(faulty: Subject) -> None:
    _arm(faulty)("/small", "500", 2)
    assert faulty.fetcher.fetch(faulty.url("small"), max_length=100) == b"hello\n"
    assert faulty.fetcher.stats.retries == 2


def test_transient_status_forever(faulty: Subject) -> None:
    _arm(faulty)("/small", "500", -1)
    with pytest.raises(FetchError, match="HTTP 500") as info:
        faulty.fetcher.fetch(faulty.url("small"), max_length=100)
    assert info.value.transient and info.value.status == 500
    assert faulty.fetcher.stats.retries == FAST.max_attempts - 1


def test_truncation_retried_then_fails(faulty: Subject) -> None:
    arm = _arm(faulty)
    arm("/big", "truncate", 1)
    assert faulty.fetcher.fetch(faulty.url("big"), max_length=1_000_000) == b"x" * 300_000
    arm("/big", "truncate", -1)
    with pytest.raises(FetchError) as info:
        faulty.fetcher.fetch(faulty.url("big"), max_length=1_000_000)
    assert info.value.transient


def test_stall_is_transient(faulty: Subject) -> None:
    arm = _arm(faulty)
    arm("/small", "stall", 1)
    assert faulty.fetcher.fetch(faulty.url("small"), max_length=100) == b"hello\n"
    arm("/small", "stall", -1)
    with pytest.raises(FetchError, match=r"stalled|timed out") as info:
        faulty.fetcher.fetch(faulty.url("small"), max_length=100)
    assert info.value.transient


def test_wrong_bytes_pass_through(faulty: Subject) -> None:
    # A fetcher moves bytes; verifying them is the caller's job (the pull's verify step).
    _arm(faulty)("/sub/f50", "garble", 1)
    data = faulty.fetcher.fetch(faulty.url("sub/f50"), max_length=10_000)
    assert len(data) == 50 * 37 and data != bytes([50]) * (50 * 37)


# --- the minimum transfer rate (issue 10, defect 4) -----------------------------------------------


def test_low_speed_guard_on_a_clock() -> None:
    g = LowSpeedGuard(limit=100, window=10, now=0.0)
    for t in range(1, 10):
        assert g.tick(50, now=float(t)) is None  # the window has not passed yet
    assert "too slow" in (g.tick(50, now=10.0) or "")  # 500 bytes in 10 s: 50 B/s < 100
    g2 = LowSpeedGuard(limit=100, window=10, now=0.0)
    assert g2.tick(5, now=5.0) is None
    assert "too slow" in (g2.tick(0, now=10.5) or "")
    fast = LowSpeedGuard(limit=100, window=10, now=0.0)
    assert all(fast.tick(2000, now=float(t)) is None for t in range(1, 60))
    fast.reset(now=100.0)
    assert fast.tick(0, now=105.0) is None  # idle time before reset does not count
    assert LowSpeedGuard(limit=0, window=10, now=0.0).tick(0, now=1e6) is None


def test_low_speed_guard_slides() -> None:
    # A transfer that was fast and then trickles fails one window after it slowed down.
    g = LowSpeedGuard(limit=100, window=4, now=0.0)
    for t in range(1, 9):
        assert g.tick(1000, now=float(t)) is None
    reasons = [g.tick(1, now=8.0 + k * 0.5) for k in range(1, 12)]
    first = next(i for i, r in enumerate(reasons) if r is not None)
    assert 6 <= first <= 9  # about 4 s (the window) after the trickle began


@pytest.mark.parametrize("kind", ["pipelined", "httpx"])
def test_trickling_server_fails_within_the_limit(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "www"
    _files(root)
    faults = Faults()
    faults.add("/sub/f99", "trickle", -1)  # 3663 bytes, one every 50 ms: ~20 B/s
    cfg = FetchConfig(
        read_timeout=5.0, max_attempts=2, backoff_base=0.01, backoff_max=0.02, low_speed_limit=1000, low_speed_time=0.5
    )
    with faulty_server(root, faults, trickle_seconds=0.05) as srv:
        f: Fetcher = PipelinedHttpFetcher(cfg) if kind == "pipelined" else HttpxFetcher(cfg)
        try:
            t0 = time.monotonic()
            with pytest.raises(FetchError, match="too slow") as info:
                f.fetch(f"{srv.url}/sub/f99", max_length=10_000)
            took = time.monotonic() - t0
            assert info.value.transient and f.stats.retries == 1
            assert took < 4, took  # 2 attempts x (0.5 s window + a sample) + backoff
            # The same fetcher still serves a fast file.
            assert f.fetch(f"{srv.url}/small", max_length=100) == b"hello\n"
        finally:
            f.close()
