"""The object store's write path and presence index: modes, owners, xattrs, under any umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree.format.content import BARE_USER_XATTR, decode_bare_user_meta
from bootree.format.objects import FileHeader, ObjectType
from bootree.repo import Repo, RepoMode

MODES = [0o644, 0o755, 0o600, 0o444, 0o4755, 0o2755, 0o1777, 0o640]


@pytest.fixture(params=[0o022, 0o077, 0o000, 0o777], ids=lambda u: f"umask{u:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _write(repo: Repo, headers: list[tuple[FileHeader, bytes]]) -> list[str]:
    with repo.transaction() as txn:
        return [txn.write_file(h, None if h.is_symlink else data) for h, data in headers]


@pytest.mark.parametrize("mode", [RepoMode.BARE_USER_ONLY, RepoMode.BARE_USER, RepoMode.BARE])
def test_object_modes_whatever_the_umask(tmp_path: Path, umask: int, mode: RepoMode) -> None:
    # Objects are created with their final mode when the umask allows it (no fchmod); the mode
    # on disk must be the header's in every case, set-ID bits included.
    if mode is RepoMode.BARE and os.geteuid() != 0:
        pytest.skip("bare repositories need root")
    repo = Repo.init(tmp_path / "repo", mode=mode)
    uid, gid = (os.geteuid(), os.getegid())
    headers = [(FileHeader(uid, gid, stat.S_IFREG | m), f"mode {m:o}".encode()) for m in MODES]
    for (header, _), csum in zip(headers, _write(repo, headers), strict=True):
        st = os.lstat(repo.object_path(ObjectType.FILE, csum))
        perm = header.mode & 0o7777
        if mode is RepoMode.BARE_USER:
            _, _, stored_mode, _ = decode_bare_user_meta(
                os.getxattr(repo.object_path(ObjectType.FILE, csum), BARE_USER_XATTR)
            )
            assert stored_mode == header.mode
        else:
            assert stat.S_IMODE(st.st_mode) == perm, f"{perm:o} stored as {stat.S_IMODE(st.st_mode):o}"
        assert st.st_mtime == 0
    assert repo.fsck().ok


def test_bare_owners_and_xattrs(tmp_path: Path, umask: int) -> None:
    # fchown is skipped only when the new file already has the owner: foreign owners, set-ID
    # bits after chown, and xattrs on files and symlinks owned by the caller must all land.
    if os.geteuid() != 0:
        pytest.skip("needs root (real file ownership)")
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE)
    xa = ((b"user.k", b"v"),)
    link_xa = ((b"trusted.k", b"v"),)  # Linux allows no user.* xattrs on symlinks
    headers = [
        (FileHeader(0, 0, 0o100644, 0, "", xa), b"root file"),
        (FileHeader(1234, 5678, 0o104755, 0, "", xa), b"foreign suid"),
        (FileHeader(0, 0, 0o120777, 0, "target", link_xa), b""),
        (FileHeader(42, 43, 0o120777, 0, "other", ()), b""),
    ]
    for (header, _), csum in zip(headers, _write(repo, headers), strict=True):
        path = repo.object_path(ObjectType.FILE, csum)
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (header.uid, header.gid)
        assert st.st_mode == header.mode
        got = tuple((n.encode(), os.getxattr(path, n, follow_symlinks=False)) for n in os.listxattr(path, follow_symlinks=False))
        assert got == header.xattrs
    assert repo.fsck().ok


def test_setgid_tmp_makes_every_write_chown(tmp_path: Path) -> None:
    # A set-group-ID tmp/ gives new files its group: the owner is then not known in advance.
    if os.geteuid() != 0:
        pytest.skip("needs root (real file ownership)")
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE)
    os.chown(repo.path / "tmp", 0, 4321)
    os.chmod(repo.path / "tmp", 0o2755)
    [csum] = _write(repo, [(FileHeader(0, 0, 0o100644), b"x")])
    st = os.lstat(repo.object_path(ObjectType.FILE, csum))
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_object_index_answers_like_lstat(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    headers = [(FileHeader(0, 0, 0o100644), os.urandom(16)) for _ in range(40)]
    present = _write(repo, headers[:20])
    index = repo.store.index()
    for h, data in headers:
        csum = h.checksum(data)
        assert index.has(ObjectType.FILE, csum) == repo.has_object(ObjectType.FILE, csum)
    assert all(index.has(ObjectType.FILE, c) for c in present)
    assert not index.has(ObjectType.DIR_TREE, present[0])  # same checksum, other type
    # A transaction's own published objects are added to its index as they are renamed in.
    with repo.transaction() as txn:
        later = [headers[i][0].checksum(headers[i][1]) for i in range(20, 40)]
        assert not any(txn.has_object_indexed(ObjectType.FILE, c) for c in later)
        for h, data in headers[20:]:
            txn.write_file(h, data)
        assert all(txn.has_object_indexed(ObjectType.FILE, c) for c in later)  # staged
        txn.checkpoint()
        assert all(txn.has_object_indexed(ObjectType.FILE, c) for c in later)  # published


def test_publish_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Content published before the commit is flushed first, visible at once, not published
    # twice, and the commit still flushes the renames before it moves a ref.
    from bootree import _fs
    from bootree.errors import RepoError
    from bootree.format.objects import DirTree

    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER_ONLY)
    calls: list[str] = []
    real_syncfs = _fs.syncfs
    monkeypatch.setattr(_fs, "syncfs", lambda p: (calls.append(os.fspath(p)), real_syncfs(p))[1])
    headers = [(FileHeader(0, 0, 0o100644), f"object {i}".encode()) for i in range(10)]
    with repo.transaction() as txn:
        csums = [txn.write_file(h, d) for h, d in headers]
        with pytest.raises(RepoError):
            txn.publish_early(ObjectType.DIR_TREE, [DirTree().to_bytes().hex()])
        txn.publish_early(ObjectType.FILE, csums[:6])
        assert calls == [os.fspath(txn.staging)]  # data flushed before any rename
        assert all(repo.store.has(ObjectType.FILE, c) for c in csums[:6])
        assert not any(repo.store.has(ObjectType.FILE, c) for c in csums[6:])
        assert all(txn.has_object(ObjectType.FILE, c) for c in csums)
        txn.publish_early(ObjectType.FILE, csums[:6])  # already published: nothing to do
        assert len(calls) == 1
        txn.set_ref("main", csums[0])  # any checksum will do for this test
        calls.clear()
    assert calls[-1] == os.fspath(repo.path / "objects")  # renames flushed before the ref
    assert all(repo.store.has(ObjectType.FILE, c) for c in csums)
    assert not list((repo.path / "tmp").glob("staging-*"))


def test_commit_flushes_renames_even_when_all_was_published_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bootree import _fs

    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER_ONLY)
    calls: list[str] = []
    monkeypatch.setattr(_fs, "syncfs", lambda p: calls.append(os.fspath(p)))
    with repo.transaction() as txn:
        csum = txn.write_file(FileHeader(0, 0, 0o100644), b"only")
        txn.publish_early(ObjectType.FILE, [csum])
        txn.set_ref("main", csum)
    assert calls == [os.fspath(txn.staging), os.fspath(repo.path / "objects")]
