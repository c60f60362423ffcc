"""ostree's whiteout passthrough: ``.ostree-wh.NAME`` files check out as overlayfs whiteouts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bootree.repo import CheckoutMode, Repo, RepoMode
from builders import Dir, File, make_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating character devices needs root")


@pytest.mark.parametrize(("mode", "how"), [(RepoMode.BARE, CheckoutMode.HARDLINK), (RepoMode.ARCHIVE, CheckoutMode.COPY)])
def test_markers_become_whiteouts_with_their_mode(tmp_path: Path, mode: RepoMode, how: CheckoutMode) -> None:
    repo = Repo.init(tmp_path / "repo", mode=mode)
    src = make_tree(tmp_path / "src", {"layer": Dir(), "layer/.ostree-wh.gone": File(b"", mode=0o400),
                                       "layer/.ostree-wh.gone2": File(b"", mode=0o755), "layer/kept": File(b"x")})
    csum = repo.commit([src], branch="main", timestamp=1)
    plain = tmp_path / "plain"
    repo.checkout(csum, plain, mode=how)
    assert sorted(os.listdir(plain / "layer")) == [".ostree-wh.gone", ".ostree-wh.gone2", "kept"]  # off by default
    out = tmp_path / "out"
    repo.checkout(csum, out, mode=how, whiteouts=True)
    assert sorted(os.listdir(out / "layer")) == ["gone", "gone2", "kept"]
    st = os.lstat(out / "layer/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0) and stat.S_IMODE(st.st_mode) == 0o400
    assert stat.S_IMODE(os.lstat(out / "layer/gone2").st_mode) == 0o755
