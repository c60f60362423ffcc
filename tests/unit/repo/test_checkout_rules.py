"""The hardlink rule and the fsync choice live in the library (issue 9, item 4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootree.errors import CheckoutError
from bootree.repo import CheckoutMode, CheckoutOptions, Repo, RepoMode
from bootree.repo.checkout import links_files, require_hardlink_checkout


@pytest.mark.parametrize(("mode", "user", "copy", "expected"), [
    (RepoMode.ARCHIVE, True, False, False),
    (RepoMode.BARE_USER, False, False, False),
    (RepoMode.BARE_USER, True, False, True),
    (RepoMode.BARE_USER, True, True, False),
    (RepoMode.BARE_USER_ONLY, False, False, True),
    (RepoMode.BARE, True, False, False),  # as ostree: -U from bare copies (files must be the caller's)
    (RepoMode.BARE, False, False, os.geteuid() == 0),
])
def test_links_files(mode: RepoMode, user: bool, copy: bool, expected: bool) -> None:
    opts = CheckoutOptions(mode=CheckoutMode.COPY if copy else CheckoutMode.HARDLINK, user_mode=user)
    assert links_files(mode, opts) is expected
    if expected:
        require_hardlink_checkout(mode, opts, "dest")
    else:
        with pytest.raises(CheckoutError, match="hardlink checkout is not possible"):
            require_hardlink_checkout(mode, opts, "dest")


@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER])
def test_require_hardlinks_refuses_before_writing(tmp_path: Path, mode: RepoMode) -> None:
    repo = Repo.init(tmp_path / "repo", mode=mode)
    (tmp_path / "t").mkdir()
    (tmp_path / "t/f").write_bytes(b"x")
    csum = repo.commit([tmp_path / "t"], branch="b")
    with pytest.raises(CheckoutError, match="hardlink checkout is not possible"):
        repo.checkout(csum, tmp_path / "co", require_hardlinks=True)
    assert not (tmp_path / "co").exists()
    if mode is RepoMode.BARE_USER:
        repo.checkout(csum, tmp_path / "co", user_mode=True, require_hardlinks=True)
        assert (tmp_path / "co/f").stat().st_nlink >= 2  # linked to the object


def test_open_chooses_fsync(tmp_path: Path) -> None:
    Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    assert Repo.open(tmp_path / "repo").fsync is True
    assert Repo.open(tmp_path / "repo", fsync=False).fsync is False
    config = tmp_path / "repo/config"
    config.write_text(config.read_text() + "fsync=false\n")
    assert Repo.open(tmp_path / "repo").fsync is False
    assert Repo.open(tmp_path / "repo", fsync=True).fsync is True
