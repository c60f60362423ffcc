"""``[ex-fsverity]`` / ``[ex-integrity]``: content objects written with fs-verity where wanted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootree import _fs
from bootree.errors import RepoError
from bootree.format.fsverity import fsverity_digest
from bootree.format.objects import ObjectType
from bootree.repo import Repo, RepoMode


def _fs_has_verity(path: Path) -> bool:
    f = path / "probe"
    f.write_bytes(b"probe")
    fd = os.open(f, os.O_RDONLY)
    try:
        return _fs.fsverity_enable(fd)
    finally:
        os.close(fd)
        os.chmod(f, 0o644)
        f.unlink()


@pytest.mark.parametrize(
    ("config", "wanted"),
    [
        ("", "no"),
        ("[ex-fsverity]\nrequired=true\n", "yes"),
        ("[ex-fsverity]\nrequired=false\nopportunistic=true\n", "maybe"),
        ("[ex-integrity]\nfsverity=yes\n", "yes"),
        ("[ex-integrity]\ncomposefs=yes\n", "maybe"),
        ("[ex-integrity]\ncomposefs=yes\nfsverity=no\n[ex-fsverity]\nrequired=true\n", "yes"),
    ],
)
def test_fs_verity_setting(tmp_path: Path, config: str, wanted: str) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    (repo.path / "config").write_text((repo.path / "config").read_text() + config)
    assert Repo.open(repo.path).fs_verity == wanted


def _commit(repo_path: Path, tree: Path) -> str:
    return Repo.open(repo_path).commit([tree], branch="b")


def test_objects_get_verity_or_required_fails(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "data").write_bytes(b"x" * 10000)
    os.symlink("data", tree / "link")
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    cfg = repo.path / "config"
    base = cfg.read_text()
    cfg.write_text(base + "[ex-fsverity]\nopportunistic=true\n")
    csum = _commit(repo.path, tree)  # maybe: never fails
    supported = _fs_has_verity(tmp_path)
    obj = next(c for p, k, c, _ in Repo.open(repo.path).walk_tree(csum) if p == "/data")  # type: ignore[arg-type]
    fd = os.open(repo.object_path(ObjectType.FILE, obj), os.O_RDONLY)
    try:
        measured = _fs.fsverity_measure(fd) if supported else None
    finally:
        os.close(fd)
    if supported:
        assert measured == fsverity_digest(b"x" * 10000)
    cfg.write_text(base + "[ex-fsverity]\nrequired=true\n")
    (tree / "data2").write_bytes(b"new content")
    if supported:
        _commit(repo.path, tree)
    else:
        with pytest.raises(RepoError, match="fs-verity is required"):
            _commit(repo.path, tree)
        assert Repo.open(repo.path).resolve_rev("b") == csum  # the failed commit changed nothing
        pytest.skip("no fs-verity on this kernel/file system: required=true refused as it must")


@pytest.mark.parametrize("mode", [RepoMode.BARE_USER, RepoMode.ARCHIVE, RepoMode.BARE_USER_ONLY])
def test_stat_file_matches_load_file(tmp_path: Path, mode: RepoMode) -> None:
    """``stat_file`` (header and size without reading content) agrees with ``load_file``."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(b"a" * 5000)
    (tree / "b").write_bytes(b"")
    (tree / "c").write_bytes(b"c" * 5000)  # same meta as "a": the memoised header
    os.chmod(tree / "c", 0o755)
    os.symlink("a", tree / "l1")
    os.symlink("some/other", tree / "l2")
    repo = Repo.init(tmp_path / "repo", mode=mode)
    csum = repo.commit([tree], branch="b")
    for _path, kind, obj, _m in repo.walk_tree(csum):
        if kind == "f":
            header, data = repo.load_file(obj)
            for _ in range(2):
                assert repo.stat_file(obj) == (header, len(data))
