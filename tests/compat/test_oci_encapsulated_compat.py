"""Encapsulated images of commits the real ostree made: imported with the same checksum.

A random tree (odd names, modes, ``user.*`` xattrs, symlinks, empty and multi-MB files; real
owners as root) is committed by ``ostree``; the tests' ostree-ext writer encapsulates that
commit (commit layer + chunk layers); bootree imports the image into a fresh repository. The
real ostree then finds the same commit there, fscks the repository, and lists the same tree.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_repo_compat import random_tree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "oci"))
from ostreegen import write_encapsulated  # type: ignore[import-not-found]

from bootree.format.checksum import Checksum
from bootree.oci.importer import pull_image
from bootree.oci.reference import ImageReference
from bootree.repo import Repo

pytestmark = pytest.mark.compat


def _ostree(ostree: str, repo: Path, *args: str) -> str:
    return subprocess.run([ostree, f"--repo={repo}", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize(("seed", "chunks"), [(1, 0), (2, 3), (3, 1)])
def test_ostree_commit_survives_encapsulation(ostree: str, tmp_path: Path, seed: int, chunks: int) -> None:
    tree = random_tree(tmp_path / "tree", seed, big=seed == 2)
    (tree / "usr/lib/modules/6.1.0-x").mkdir(parents=True)
    (tree / "usr/lib/modules/6.1.0-x/vmlinuz").write_bytes(b"kernel")
    src = tmp_path / "src"
    _ostree(ostree, src, "init", "--mode=bare-user")
    commit = _ostree(ostree, src, "commit", "--branch=os", f"--tree=dir={tree}", "--subject=v1",
                     "--add-metadata-string=version=1", "--timestamp=2024-01-01T00:00:00Z").strip()
    lay = tmp_path / "oci"
    write_encapsulated(lay, Repo.open(src), commit, chunks=chunks)
    dest = Repo.init(tmp_path / "dest")
    res = pull_image(dest, ImageReference.parse(f"oci:{lay}"), architecture="amd64")
    assert res.ostree_commit == Checksum(commit)
    _ostree(ostree, dest.path, "fsck")
    assert _ostree(ostree, dest.path, "ls", "-R", "-X", commit) == _ostree(ostree, src, "ls", "-R", "-X", commit)
    assert "Version: 1" in _ostree(ostree, dest.path, "show", commit)
