"""The client's summary cache (``tmp/cache/summaries/REMOTE`` and ``.sig``), as ostree keeps it.

A session with a cache fetches ``summary.sig`` first and reuses the cached summary while the
server's signature is the cached one; the cache only ever holds a summary its policy accepted;
a cached summary the policy refuses is fetched again (or, with the test hook, reported).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from simulator import BASE, RemoteSimulator

from bootree.errors import InjectedTestError, SignatureError
from bootree.format.checksum import Checksum
from bootree.format.verified import VerifiedMetadata
from bootree.pull.session import RemoteSession
from bootree.pull.summarycache import SKIP_ENV, SummaryCache


class _SigPolicy:
    """Accepts a summary whose signature is the SHA-256 of its bytes (a stand-in for a real key)."""

    wants_detached_metadata = False

    def check_start(self) -> None:
        pass

    def check_summary(self, data: bytes, signature: bytes | None) -> None:
        if signature != hashlib.sha256(data).digest():
            raise SignatureError("summary", "bad", "signature does not match")

    def check_commit(self, csum: Checksum, commit: VerifiedMetadata, detached: bytes | None) -> None:
        pass


def _remote(sig: bool = True) -> RemoteSimulator:
    sim = RemoteSimulator()
    sim.commit("main", {"a": b"1"})
    if sig:
        _sign(sim)
    return sim


def _sign(sim: RemoteSimulator) -> None:
    sim.fetcher.files[sim.url("summary.sig")] = hashlib.sha256(sim.fetcher.files[sim.url("summary")]).digest()


def _summary(sim: RemoteSimulator, cache: SummaryCache | None) -> bytes:
    sim.fetcher.hits.clear()
    session = RemoteSession(sim.fetcher, BASE, name="origin", policy=_SigPolicy(), cache=cache)
    found = session.summary()
    assert found is not None
    return found.data


def _summary_hits(sim: RemoteSimulator) -> int:
    return sum(1 for url in sim.fetcher.hits if url.endswith("/summary"))


def test_second_session_reuses_the_cached_summary(tmp_path: Path) -> None:
    sim, cache = _remote(), SummaryCache(tmp_path)
    data = _summary(sim, cache)
    assert _summary_hits(sim) == 1
    assert (tmp_path / "summaries/origin").read_bytes() == data
    assert (tmp_path / "summaries/origin.sig").read_bytes() == hashlib.sha256(data).digest()
    inode = (tmp_path / "summaries/origin").stat().st_ino
    assert _summary(sim, cache) == data
    assert _summary_hits(sim) == 0  # only summary.sig was fetched
    assert (tmp_path / "summaries/origin").stat().st_ino == inode  # not rewritten


def test_new_signature_fetches_and_replaces(tmp_path: Path) -> None:
    sim, cache = _remote(), SummaryCache(tmp_path)
    _summary(sim, cache)
    sim.commit("main", {"a": b"2"})
    _sign(sim)
    data = _summary(sim, cache)
    assert _summary_hits(sim) == 1
    assert (tmp_path / "summaries/origin").read_bytes() == data


def test_unsigned_summary_is_not_cached(tmp_path: Path) -> None:
    sim = _remote(sig=False)
    session = RemoteSession(sim.fetcher, BASE, name="origin", cache=SummaryCache(tmp_path))
    assert session.summary() is not None
    assert not (tmp_path / "summaries").exists()


def test_missing_summary_drops_its_signature(tmp_path: Path) -> None:
    sim, cache = _remote(), SummaryCache(tmp_path)
    _summary(sim, cache)
    (tmp_path / "summaries/origin").unlink()
    _summary(sim, cache)
    assert _summary_hits(sim) == 1
    assert (tmp_path / "summaries/origin").is_file()


def test_refused_summary_is_never_cached(tmp_path: Path) -> None:
    sim, cache = _remote(), SummaryCache(tmp_path)
    sim.fetcher.files[sim.url("summary.sig")] = b"forged"
    with pytest.raises(SignatureError):
        _summary(sim, cache)
    assert not (tmp_path / "summaries/origin").exists()


def test_invalid_cached_summary_is_refetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim, cache = _remote(), SummaryCache(tmp_path)
    good = _summary(sim, cache)
    (tmp_path / "summaries/origin").write_bytes(b"a summary the signature does not cover")
    monkeypatch.setenv("OSTREE_REPO_TEST_ERROR", "invalid-cache")
    with pytest.raises(InjectedTestError, match="OSTREE_REPO_TEST_ERROR_INVALID_CACHE"):
        _summary(sim, cache)
    monkeypatch.delenv("OSTREE_REPO_TEST_ERROR")
    assert _summary(sim, cache) == good
    assert _summary_hits(sim) == 1
    assert (tmp_path / "summaries/origin").read_bytes() == good


def test_prune_keeps_only_configured_remotes(tmp_path: Path) -> None:
    cache = SummaryCache(tmp_path)
    cache.store("origin", b"s", b"g")
    for name in ("foo", "foo.sig"):
        (tmp_path / "summaries" / name).write_bytes(b"x")
    assert sorted(cache.prune(["origin"])) == ["foo", "foo.sig"]
    assert sorted(p.name for p in (tmp_path / "summaries").iterdir()) == ["origin", "origin.sig"]


def test_repo_default_and_skip_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SKIP_ENV, raising=False)
    assert SummaryCache.for_repo(tmp_path) == SummaryCache(tmp_path / "tmp" / "cache")
    monkeypatch.setenv(SKIP_ENV, "1")
    assert SummaryCache.for_repo(tmp_path) is None
    assert SummaryCache.for_repo(tmp_path, tmp_path / "c") == SummaryCache(tmp_path / "c")


def test_file_urls_and_unsafe_names_are_not_cached(tmp_path: Path) -> None:
    assert RemoteSession(RemoteSimulator().fetcher, "file:///srv/repo", cache=SummaryCache(tmp_path)).cache is None
    cache = SummaryCache(tmp_path)
    cache.store("../evil", b"s", b"g")
    cache.store("http://host/repo", b"s", b"g")
    assert not (tmp_path / "summaries").exists() or not any((tmp_path / "summaries").iterdir())
