"""Issue 10 defect 1, pull side: a pull that fills the disk leaves nothing a later pull trusts.

A commit larger than a small tmpfs is pulled into archive and bare-user repositories, over HTTP
(``pull``) and from a local repository (``pull-local``). The pull fails with one line; no empty
or partial object is visible; after the tmpfs is made larger, the same pull completes and both
``bootree fsck`` and ostree's ``fsck`` are clean and a checkout equals the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bootree.cli import main
from bootree.pull.publish import update_summary
from bootree.repo import Repo, RepoMode
from bootree.transport.server import StaticServer
from builders import snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("mounting a tmpfs needs root", allow_module_level=True)


def _tree(root: Path) -> Path:
    # A chain of directories, each with an incompressible blob: dirtrees keep arriving while
    # content fills the disk, so metadata writes fail too (the case that left empty dirtrees).
    d = root / "tree"
    cur = d
    for i in range(100):
        cur.mkdir(parents=True)
        for j in range(3):
            (cur / f"small{j}").write_bytes(f"file {i}.{j}\n".encode() * (j + 1))
        (cur / "blob").write_bytes(os.urandom(90_000))  # 9 MB in all, the disk has 4
        cur = cur / f"d{i}"
    os.symlink("small0", d / "link")
    return d


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Repo, Path, str]]:
    root = tmp_path_factory.mktemp("fullsrc")
    tree = _tree(root)
    repo = Repo.init(root / "repo", mode=RepoMode.ARCHIVE)
    repo.commit([tree], branch="big", subject="big", timestamp=1700000000)
    update_summary(repo)
    with StaticServer(repo.path) as srv:
        yield repo, tree, srv.url


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _objects(repo: Path) -> list[Path]:
    return [p for p in (repo / "objects").rglob("*") if p.is_file()]


@pytest.mark.parametrize("op", ["pull", "pull-local"])
@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER])
def test_full_disk_then_retry(
    source: tuple[Repo, Path, str], small_disk: Path, mode: RepoMode, op: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src, tree, url = source
    dst = small_disk / "repo"
    Repo.init(dst, mode=mode)
    if op == "pull":
        assert main(["remote", "add", f"--repo={dst}", "--no-gpg-verify", "origin", url]) == 0
        argv = ["pull", f"--repo={dst}", "origin", "big"]
        ref = "origin:big"
    else:
        argv = ["pull-local", f"--repo={dst}", str(src.path), "big"]
        ref = "big"
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "No space left on device" in err[0], err
    repo = Repo.open(dst)
    assert repo.refs.get(ref) is None
    # Nothing empty or partial is visible under objects/, and what is there verifies.
    for p in _objects(dst):
        assert p.stat().st_size > 0, p  # the tree has no empty file: an empty object is a failed write
    assert repo.fsck().ok
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    repo = Repo.open(dst)
    commit = src.refs.get("big")
    assert repo.refs.get(ref) == commit
    assert repo.fsck().ok
    if shutil.which("ostree"):
        res = subprocess.run(["ostree", "fsck", f"--repo={dst}"], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
    out = small_disk / "co"
    assert commit is not None
    repo.checkout(commit, out, user_mode=True)
    assert snapshot(out, owners=False, xattrs=False) == snapshot(tree, owners=False, xattrs=False)
