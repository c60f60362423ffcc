"""pull-local between archive repositories: content objects are hardlinked (verified), copied
when the file system refuses the link, and a corrupt source object is refused either way."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bootree.errors import BootreeError
from bootree.format.checksum import ObjectType
from bootree.pull import pull_local
from bootree.repo import Repo, RepoMode


def _source(tmp_path: Path) -> Repo:
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "a").write_bytes(b"a" * 1000)
    (tree / "d" / "b").write_bytes(os.urandom(300_000))  # over the streaming threshold
    src = Repo.init(tmp_path / "src", mode=RepoMode.ARCHIVE)
    src.commit([tree], branch="main", timestamp=1)
    return src


def _filez(repo: Repo) -> list[Path]:
    return sorted(repo.path.glob("objects/*/*.filez"))


def test_archive_to_archive_hardlinks(tmp_path: Path) -> None:
    src = _source(tmp_path)
    dst = Repo.init(tmp_path / "dst", mode=RepoMode.ARCHIVE)
    pull_local(dst, src.path, ["main"])
    assert _filez(src)
    for f in _filez(src):
        assert os.stat(f).st_ino == os.stat(dst.path / f.relative_to(src.path)).st_ino
    assert dst.fsck().ok


def test_refused_link_falls_back_to_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path)
    dst = Repo.init(tmp_path / "dst", mode=RepoMode.ARCHIVE)

    def no_link(*_a: object, **_k: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    pull_local(dst, src.path, ["main"])
    for f in _filez(src):
        copy = dst.path / f.relative_to(src.path)
        assert os.stat(f).st_ino != os.stat(copy).st_ino and copy.read_bytes() == f.read_bytes()
    assert dst.fsck().ok


def test_corrupt_source_object_is_not_linked(tmp_path: Path) -> None:
    src = _source(tmp_path)
    victim = next(f for f in _filez(src) if f.stat().st_size < 10_000)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    dst = Repo.init(tmp_path / "dst", mode=RepoMode.ARCHIVE)
    with pytest.raises(BootreeError):
        pull_local(dst, src.path, ["main"])
    csum = victim.parent.name + victim.name.removesuffix(".filez")
    assert not dst.has_object(ObjectType.FILE, csum)  # type: ignore[arg-type]
    assert dst.refs.get("main") is None
