"""Hardlink checkouts shared between this process and a forked one (see repo/checkout_split.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bootree.errors import CheckoutError, ObjectMissing
from bootree.format.objects import ObjectType
from bootree.repo import Repo, RepoMode
from bootree.repo import checkout as checkout_mod
from builders import snapshot


def _wide_tree(root: Path, dirs: int = 300) -> Path:
    """More subtrees than the split's unit count, some read-only, some nested, with symlinks."""
    root.mkdir()
    for i in range(dirs):
        d = root / f"d{i:03}"
        (d / "inner" / "deeper").mkdir(parents=True)
        (d / "f").write_bytes(f"file {i}\n".encode())
        (d / "inner" / "same").write_bytes(b"shared content\n")
        (d / "inner" / "deeper" / f"x{i}").write_bytes(os.urandom(32))
        (d / "link").symlink_to("f")
        if i % 7 == 0:
            (d / "inner" / "deeper").chmod(0o555)
            d.chmod(0o555)
    return root


@pytest.fixture
def wide_repo(tmp_path: Path) -> tuple[Repo, str, Path]:
    src = _wide_tree(tmp_path / "src")
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    csum = repo.commit([src], branch="wide", timestamp=1)
    return repo, csum, src


def test_split_checkout_equals_source_and_forks(wide_repo: tuple[Repo, str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    repo, csum, src = wide_repo
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(checkout_mod.os, "fork", fork)
    n = repo.checkout(csum, tmp_path / "co", user_mode=True)
    assert forked, "the tree has enough subtrees: the checkout should have used a second process"
    assert n == 300 * 4
    assert snapshot(tmp_path / "co", xattrs=False) == snapshot(src, xattrs=False)  # bare-user objects carry user.ostreemeta
    # Read-only directories above and inside the units got their mode after their contents.
    assert stat.S_IMODE(os.stat(tmp_path / "co" / "d000").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(tmp_path / "co" / "d007" / "inner" / "deeper").st_mode) == 0o555
    # Files are hardlinks to the objects.
    assert os.stat(tmp_path / "co" / "d001" / "f").st_nlink >= 2


def test_split_checkout_reports_a_missing_object(wide_repo: tuple[Repo, str, Path], tmp_path: Path) -> None:
    # Whichever process meets the missing object, the caller gets the typed error, and both
    # processes are gone (no hang, no orphan).
    repo, csum, _ = wide_repo
    victim = repo.walk_tree(csum)
    target = next(obj for path, kind, obj, _ in victim if kind == "f" and path.endswith("/x250"))
    os.unlink(repo.object_path(ObjectType.FILE, target))
    with pytest.raises(ObjectMissing) as info:
        repo.checkout(csum, tmp_path / "co", user_mode=True)
    assert target in str(info.value)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_split_checkout_union_conflict(wide_repo: tuple[Repo, str, Path], tmp_path: Path) -> None:
    repo, csum, _ = wide_repo
    dest = tmp_path / "co"
    (dest / "d299" / "inner").mkdir(parents=True)
    (dest / "d299" / "inner" / "same").mkdir()  # a directory where the commit has a file
    with pytest.raises(CheckoutError, match="d299/inner/same"):
        repo.checkout(csum, dest, user_mode=True, union=True)


def test_no_split_with_other_threads(wide_repo: tuple[Repo, str, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # fork() with other threads alive could deadlock the child: then everything runs here.
    import threading

    repo, csum, src = wide_repo
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        monkeypatch.setattr(checkout_mod.os, "fork", lambda: pytest.fail("forked with threads alive"))
        repo.checkout(csum, tmp_path / "co", user_mode=True)
    finally:
        stop.set()
        t.join()
    assert snapshot(tmp_path / "co", xattrs=False) == snapshot(src, xattrs=False)  # bare-user objects carry user.ostreemeta
