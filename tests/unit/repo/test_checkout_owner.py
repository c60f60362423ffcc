"""Directory owners after a checkout: the fchown a new directory skips when it already has the
owner asked for (see ``_Checkout.note_root``) must never leave a wrong owner, group or mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootree.repo import CheckoutMode, Repo, RepoMode

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: directories owned by other users")


def _tree(root: Path) -> Path:
    """Directories owned by root and by others, one setgid, nested under each other."""
    for i in range(30):
        d = root / f"d{i:02}" / "inner"
        d.mkdir(parents=True)
        (d / "f").write_bytes(f"{i}\n".encode())
        if i % 3 == 1:
            os.chown(d, 1234, 5678)
        if i % 5 == 2:
            os.chown(d.parent, 0, 4321)
            d.parent.chmod(0o2775)
    return root


def _dirs(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for dirpath, _, _ in os.walk(root):
        st = os.lstat(dirpath)
        out[os.path.relpath(dirpath, root)] = (st.st_uid, st.st_gid, st.st_mode)
    out.pop(".")
    return out


@pytest.mark.parametrize("dest_kind", ["plain", "setgid-dest", "other-group-dest"])
def test_hardlink_checkout_gives_every_directory_its_committed_owner(tmp_path: Path, dest_kind: str) -> None:
    src = _tree(tmp_path / "src")
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE)
    csum = repo.commit([src], branch="t", timestamp=1)
    parent = tmp_path / "out"
    parent.mkdir()
    if dest_kind == "setgid-dest":  # new directories inherit its group and the setgid bit
        os.chown(parent, 0, 4321)
        parent.chmod(0o2777)
    elif dest_kind == "other-group-dest":
        os.chown(parent, 0, 4321)
    dest = parent / "co"
    dest.mkdir()
    if dest_kind != "plain":
        os.chown(dest, 0, 4321)
        if dest_kind == "setgid-dest":
            dest.chmod(0o2755)
    repo.checkout(csum, dest, mode=CheckoutMode.HARDLINK, union=True)
    assert _dirs(dest) == _dirs(src)
