"""The repository's summary operation: build, write atomically, read back with typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.builders import make_tree

from bootree.errors import CorruptSummary, SummaryNotFound
from bootree.format.gvariant import Variant
from bootree.repo import Repo, RepoMode
from bootree.repo.summary import build_summary, read_summary, update_summary, write_summary


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    repo.commit([make_tree(tmp_path / "t", {"a": b"1"})], branch="main", timestamp=5)
    return repo


def test_update_then_read(repo: Repo) -> None:
    with pytest.raises(SummaryNotFound, match="has no summary"):
        read_summary(repo)
    (repo.path / "summary.sig").write_bytes(b"stale")
    written = update_summary(repo, extra_metadata=[("x.key", Variant("s", "v"))], now=7)
    assert not (repo.path / "summary.sig").exists()  # a new summary invalidates the old signature
    got = read_summary(repo)
    assert got == written
    assert [r.name for r in got.refs] == ["main"]
    assert got.last_modified == 7 and got.get("x.key") == "v"
    assert build_summary(repo, now=7, extra_metadata=[("x.key", Variant("s", "v"))]).to_bytes() == got.to_bytes()


def test_write_refuses_corrupt_bytes_and_keeps_the_old_summary(repo: Repo) -> None:
    good = update_summary(repo, now=1)
    with pytest.raises(CorruptSummary):
        write_summary(repo, b"\x01not a summary", b"sig")
    assert read_summary(repo) == good
    write_summary(repo, good.to_bytes(), b"signature")
    assert (repo.path / "summary.sig").read_bytes() == b"signature"
    write_summary(repo, good.to_bytes(), None)
    assert not (repo.path / "summary.sig").exists()


def test_read_corrupt(repo: Repo) -> None:
    (repo.path / "summary").write_bytes(b"\x00\x01\x02")
    with pytest.raises(CorruptSummary, match="corrupt"):
        read_summary(repo)
