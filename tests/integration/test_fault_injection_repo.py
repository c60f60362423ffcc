"""ENOSPC and EIO at every write, fsync and rename of ``commit`` and ``pull`` (issue 10 item 2).

After each injected failure: the repository fscks clean (bootree every time, ``ostree fsck`` on
a sample), every object visible under ``objects/`` is non-empty and verifies, refs are
unchanged (or moved to a commit that is complete), and the same operation then succeeds
without the fault. The number of injection points of each writer is printed.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultkit import ostree_fsck, scratch_dir, sweep, verify_visible_objects  # type: ignore[import-not-found]

from bootree.format.checksum import Checksum
from bootree.pull import add_remote, get_remote, pull, pull_local
from bootree.repo import CommitOptions, Repo, RepoMode

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield from scratch_dir(tmp_path)


def _tree(root: Path, version: int) -> Path:
    d = root / f"tree{version}"
    (d / "usr/bin").mkdir(parents=True)
    (d / "usr/share/doc").mkdir(parents=True)
    for i in range(4):
        (d / "usr/bin" / f"tool{i}").write_bytes(f"tool {i} v{version}\n".encode() * (i + 1))
    (d / "usr/share/doc/README").write_bytes(b"readme %d\n" % version)
    os.symlink("usr/bin", d / "bin")
    return d


def _commit(repo: Repo, tree: Path, version: int, branch: str = "main") -> Checksum:
    return repo.commit([tree], branch=branch, subject=f"v{version}", timestamp=1700000000 + version,
                       options=CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True))


def _copies(template: Path, prefix: str) -> Callable[[], Path]:
    """A setup that gives each run its own copy of ``template``."""
    runs = iter(range(10**6))

    def setup() -> Path:
        p = template.parent / f"{prefix}{next(runs)}"
        shutil.copytree(template, p, symlinks=True)
        return p
    return setup


class _Check:
    """The invariants after a run; ``ostree fsck`` on every ``sample``-th call only (it is slow)."""

    def __init__(self, sample: int = 10) -> None:
        self.calls = 0
        self.sample = sample

    def __call__(self, path: Path, refs_before: dict[str, Checksum], redo: object) -> None:
        self.calls += 1
        repo = Repo.open(path)
        assert repo.fsck().ok
        verify_visible_objects(repo)
        refs = repo.list_refs()
        for name in refs_before:
            assert name in refs, f"ref {name} disappeared"
        # A ref that moved points at a complete commit: fsck above walked it.
        if self.calls % self.sample == 1:
            ostree_fsck(path)
        assert callable(redo)
        redo()  # the operation succeeds once the disk is fine again
        repo = Repo.open(path)
        assert repo.fsck().ok
        verify_visible_objects(repo)


@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER])
def test_commit_survives_a_failure_at_every_point(scratch: Path, mode: RepoMode) -> None:
    tmp_path = scratch
    template = tmp_path / "template"
    repo = Repo.init(template, mode=mode)
    _commit(repo, _tree(tmp_path, 1), 1)
    tree2 = _tree(tmp_path, 2)
    check = _Check()
    setup = _copies(template, "r")

    def op(p: object) -> None:
        _commit(Repo.open(p), tree2, 2)  # type: ignore[arg-type]

    def after(p: object, exc: BaseException | None) -> None:
        assert isinstance(p, Path)
        before = Repo.open(template).list_refs()
        now = Repo.open(p).list_refs()
        if exc is not None and now != before:
            # Only a failure after the ref's rename (its directory fsync) may leave it moved,
            # and then to the complete new commit (the fsck in check() walks it).
            assert str(exc).find("fsync") >= 0 and set(now) == set(before), f"a failed commit moved a ref: {exc}"
        check(p, before, lambda: op(p))
        assert Repo.open(p).list_refs()["main"] != before["main"]
        shutil.rmtree(p)

    res = sweep(f"commit ({mode.config_value})", setup, op, after)
    assert res.points > 10 and res.fired > 0


@pytest.mark.parametrize(("src_mode", "dst_mode", "how"), [
    (RepoMode.ARCHIVE, RepoMode.ARCHIVE, "pull"),
    (RepoMode.ARCHIVE, RepoMode.BARE_USER, "pull"),
    (RepoMode.BARE_USER, RepoMode.BARE_USER, "pull-local"),
])
def test_pull_survives_a_failure_at_every_point(scratch: Path, src_mode: RepoMode, dst_mode: RepoMode,
                                                how: str) -> None:
    tmp_path = scratch
    src = Repo.init(tmp_path / "src", mode=src_mode)
    _commit(src, _tree(tmp_path, 1), 1)
    v2 = _commit(src, _tree(tmp_path, 2), 2)
    template = tmp_path / "template"
    dst = Repo.init(template, mode=dst_mode)
    if how == "pull":
        add_remote(dst.config, "origin", src.path.as_uri(), gpg_verify=False)
        dst.save_config()
    check = _Check()
    setup = _copies(template, "d")

    def op(p: object) -> None:
        repo = Repo.open(p)  # type: ignore[arg-type]
        if how == "pull":
            pull(repo, get_remote(repo.config, "origin"), ["main"])
        else:
            pull_local(repo, src.path, ["main"])

    def after(p: object, exc: BaseException | None) -> None:
        assert isinstance(p, Path)
        refs = Repo.open(p).list_refs()
        if exc is not None and refs:
            assert "fsync" in str(exc) and set(refs.values()) == {v2}, f"a failed pull moved a ref: {refs} {exc}"
        check(p, {}, lambda: op(p))
        assert v2 in Repo.open(p).list_refs().values()
        shutil.rmtree(p)

    res = sweep(f"{how} ({src_mode.config_value} -> {dst_mode.config_value})", setup, op, after)
    assert res.points > 5 and res.fired > 0
