"""prune, locks, partial commits, resolve_rev and diff."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootree.errors import LockTimeout, RefNotFound
from bootree.format.objects import ObjectType
from bootree.repo import Repo, RepoMode
from builders import make_tree


def test_prune_refs_only_and_depth(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    commits = []
    for i in range(3):
        t = make_tree(tmp_path / f"t{i}", {"common": b"c", f"only{i}": os.urandom(64)})
        commits.append(repo.commit([t], branch="main", timestamp=i + 1))
    orphan = repo.commit([make_tree(tmp_path / "o", {"orphan": b"o"})], timestamp=9, bindings=False)
    # Without --refs-only every commit is a root: nothing to delete.
    assert repo.prune().deleted == 0
    dry = repo.prune(refs_only=True, dry_run=True)
    assert dry.deleted > 0 and repo.has_object(ObjectType.COMMIT, orphan)
    result = repo.prune(refs_only=True)
    assert result.deleted == dry.deleted
    assert not repo.has_object(ObjectType.COMMIT, orphan)
    assert all(repo.has_object(ObjectType.COMMIT, c) for c in commits)
    repo.prune(refs_only=True, depth=0)
    assert repo.has_object(ObjectType.COMMIT, commits[2])
    assert not repo.has_object(ObjectType.COMMIT, commits[0])
    assert repo.fsck().ok
    assert repo.resolve_rev("main^") == commits[1]


def test_ostree_like_lock_conflicts(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    repo.lock_timeout = 0.3
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from bootree._fs import ofd_lock\n"
         f"with ofd_lock({str(repo.path / '.lock')!r}, exclusive=True):\n"
         "    print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeout), repo.transaction():
            pass
    finally:
        holder.kill()
        holder.wait()
    with repo.transaction():
        pass


def test_partial_marker(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    c = repo.commit([make_tree(tmp_path / "t", {"a": b"a"})], branch="m", timestamp=1)
    with repo.transaction() as txn:
        txn.mark_partial(c)
        assert repo.is_partial(c)
        txn.clear_partial(c)
        assert repo.is_partial(c)  # cleared only when the transaction commits
    assert not repo.is_partial(c)


def test_resolve_errors(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    with pytest.raises(RefNotFound):
        repo.resolve_rev("nope")
    assert repo.try_resolve_rev("nope") is None


def test_config_roundtrip(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    assert (repo.path / "config").read_text() == "[core]\nrepo_version=1\nmode=archive-z2\n"
    repo.config.set('remote "origin"', "url", "http://127.0.0.1:1/repo")
    repo.save_config()
    assert Repo.open(repo.path).config.get('remote "origin"', "url") == "http://127.0.0.1:1/repo"
    for sub in ("extensions", "objects", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp/cache"):
        assert (repo.path / sub).is_dir()
