"""OSTREE_REPO_TEST_ERROR=pre-commit: the transaction fails before its commit point, as ostree's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootree.errors import InjectedTestError
from bootree.repo import Repo, RepoMode
from builders import make_tree


def test_pre_commit_fails_before_anything_is_published_and_leaves_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    src = make_tree(tmp_path / "src", {"a": b"1"})
    monkeypatch.setenv("OSTREE_BOOTID", "boot-a")
    monkeypatch.setenv("OSTREE_REPO_TEST_ERROR", "invalid-cache,pre-commit")
    with pytest.raises(InjectedTestError, match=r"^OSTREE_REPO_TEST_ERROR_PRE_COMMIT$"):
        repo.commit([src], branch="main", timestamp=1)
    assert repo.list_refs() == {}
    left = [p.name for p in (repo.path / "tmp").iterdir() if p.name != "cache"]
    assert len(left) == 1 and left[0].startswith("staging-boot-a-")  # no lock file: as ostree leaves it
    monkeypatch.delenv("OSTREE_REPO_TEST_ERROR")
    monkeypatch.setenv("OSTREE_BOOTID", "boot-b")
    repo.commit([src], branch="main", timestamp=1)
    assert [p for p in (repo.path / "tmp").iterdir() if p.name.startswith("staging-")] == []
    assert repo.fsck().ok
