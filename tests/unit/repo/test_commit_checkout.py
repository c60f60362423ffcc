"""Commit and checkout in every mode: ostree's vector checksums, dedup, options, trees."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from bootree.errors import CheckoutError, RefNotFound, SourceError
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType
from bootree.repo import CheckoutMode, CommitOptions, Repo, RepoMode, TreeSource
from builders import (
    VECTOR_COMMIT,
    VECTOR_OBJECTS,
    VECTOR_TREE,
    VECTOR_XATTR_COMMIT,
    Dir,
    File,
    Link,
    make_tree,
    snapshot,
)

VECTOR_OPTS = CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True)


def commit_vector(repo: Repo, tree: Path) -> str:
    return repo.commit([tree], branch="test", subject="subj", body="body", timestamp=1700000000, options=VECTOR_OPTS)


def test_vector_checksums_every_mode(repo: Repo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", VECTOR_TREE)
    csum = commit_vector(repo, tree)
    assert csum == VECTOR_COMMIT
    c = repo.read_commit(csum)
    assert c.root_tree == VECTOR_OBJECTS[("dirtree", "/")]
    assert c.root_meta == VECTOR_OBJECTS[("dirmeta", "/")]
    listed = {(kind, path): obj for path, kind, obj, _ in repo.walk_tree(csum)}
    assert listed[("d", "/sub")] == VECTOR_OBJECTS[("dirtree", "/sub")]
    for (kind, path), obj in VECTOR_OBJECTS.items():
        if kind == "file":
            assert listed[("f", path)] == obj
            assert repo.has_object(ObjectType.FILE, obj)
    assert repo.resolve_rev("test") == csum
    assert repo.fsck().ok


def test_xattr_vector(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    tree = make_tree(tmp_path / "xt", {"f": File(b"x", 0o644, {"user.b": b"2", "user.a": b"one"})})
    os.setxattr(tree, "user.d", b"dir")
    csum = repo.commit([tree], branch="xt", timestamp=1700000000, bindings=False,
                       options=CommitOptions(owner_uid=0, owner_gid=0))
    assert csum == VECTOR_XATTR_COMMIT


def test_dedup_second_commit_writes_only_new_objects(archive_repo: Repo, tmp_path: Path) -> None:
    t1 = make_tree(tmp_path / "t1", {"a": b"1" * 1000, "b": b"2" * 1000, "d/c": b"3"})
    c1 = archive_repo.commit([t1], branch="x", timestamp=1)
    before = set(archive_repo.store.iter_objects())
    mtimes = {o: os.stat(archive_repo.object_path(*o)).st_mtime_ns for o in before}
    (t1 / "b").write_bytes(b"changed")
    c2 = archive_repo.commit([t1], branch="x", timestamp=2)
    after = set(archive_repo.store.iter_objects())
    new = after - before
    # new content, new root dirtree, new commit; dirmeta and subdir tree shared
    assert {t for t, _ in new} == {ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.COMMIT}
    assert len(new) == 3
    assert all(os.stat(archive_repo.object_path(*o)).st_mtime_ns == m for o, m in mtimes.items())
    assert archive_repo.read_commit(c2).parent == c1
    assert [e.path for e in archive_repo.diff(c1, c2)] == ["/b"]


def test_large_file_streams(archive_repo: Repo, tmp_path: Path) -> None:
    big = os.urandom(1 << 20) * 10  # 10 MiB, above the in-memory threshold
    t = make_tree(tmp_path / "t", {"big": big, "small": b"s"})
    c = archive_repo.commit([t], branch="b", timestamp=1)
    out = tmp_path / "co"
    archive_repo.checkout(c, out)
    assert (out / "big").read_bytes() == big
    assert archive_repo.fsck().ok


def test_checkout_roundtrip_every_mode(repo: Repo, tmp_path: Path) -> None:
    spec = {
        **VECTOR_TREE,
        "ro/inner/file": File(b"data", 0o600),
        "ro": Dir(0o555),
        "emptydir": Dir(0o700),
        "exe": File(b"#!", 0o755),
        "abs": Link("/etc/passwd"),
        "dangling": Link("../../nowhere"),
    }
    tree = make_tree(tmp_path / "tree", spec)
    c = repo.commit([tree], branch="t", timestamp=1, options=CommitOptions(no_xattrs=True))
    for mode in CheckoutMode:
        dest = tmp_path / f"co-{mode.value}"
        repo.checkout(c, dest, mode=mode, user_mode=True)
        expected = snapshot(tree, owners=False, xattrs=False)
        got = snapshot(dest, owners=False, xattrs=False)
        if repo.mode is RepoMode.BARE_USER and mode is CheckoutMode.HARDLINK:
            # hardlinked bare-user objects carry their on-disk mode: owner-readable, no suid
            expected = {k: v for k, v in expected.items() if v[0] != "f"}
            got = {k: v for k, v in got.items() if v[0] != "f"}
        assert got == expected


def test_hardlink_checkout_shares_inodes(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    tree = make_tree(tmp_path / "tree", {"a": b"aaa", "b/c": b"ccc", "l": Link("a")})
    c = repo.commit([tree], branch="t", timestamp=1)
    repo.checkout(c, tmp_path / "co", user_mode=True)
    for name in ("a", "b/c"):
        assert os.stat(tmp_path / "co" / name).st_nlink >= 2
    assert os.readlink(tmp_path / "co" / "l") == "a"


def test_checkout_subpath_union_and_errors(archive_repo: Repo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {"usr/bin/sh": b"sh", "usr/lib/x": b"x", "etc/conf": b"c"})
    c = archive_repo.commit([tree], branch="t", timestamp=1)
    archive_repo.checkout(c, tmp_path / "usr", subpath="/usr", user_mode=True)
    assert sorted(os.listdir(tmp_path / "usr")) == ["bin", "lib"]
    archive_repo.checkout(c, tmp_path / "one", subpath="/usr/bin/sh", user_mode=True)
    assert (tmp_path / "one").read_bytes() == b"sh"
    with pytest.raises(CheckoutError):
        archive_repo.checkout(c, tmp_path / "usr", user_mode=True)
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "etc").mkdir()
    (tmp_path / "u" / "etc" / "conf").write_bytes(b"old")
    (tmp_path / "u" / "keep").write_bytes(b"k")
    archive_repo.checkout(c, tmp_path / "u", union=True, user_mode=True)
    assert (tmp_path / "u" / "etc" / "conf").read_bytes() == b"c"
    assert (tmp_path / "u" / "keep").read_bytes() == b"k"
    with pytest.raises(CheckoutError):
        archive_repo.checkout(c, tmp_path / "x", subpath="/nope")


def test_union_checkout_never_writes_through_symlinks(archive_repo: Repo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {"etc/passwd": b"evil", "etc/shadow": b"evil"})
    c = archive_repo.commit([tree], branch="t", timestamp=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "etc")
    with pytest.raises(CheckoutError, match="symlink"):
        archive_repo.checkout(c, dest, union=True, user_mode=True)
    assert os.listdir(outside) == []


def test_tree_sources_overlay_and_tar(archive_repo: Repo, tmp_path: Path) -> None:
    base = make_tree(tmp_path / "base", {"a": b"base-a", "b": b"base-b"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data, kind in [("./d", b"", tarfile.DIRTYPE), ("./d/f", b"tar-f", tarfile.REGTYPE),
                                 ("./b", b"tar-b", tarfile.REGTYPE), ("./d/hl", b"", tarfile.LNKTYPE),
                                 ("./sym", b"", tarfile.SYMTYPE)]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            if kind == tarfile.LNKTYPE:
                info.linkname = "./d/f"
            if kind == tarfile.SYMTYPE:
                info.linkname = "a"
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                info.pax_headers = {"SCHILY.xattr.user.k": "v"}
            tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    tarball = tmp_path / "layer.tar.gz"
    tarball.write_bytes(buf.getvalue())
    c = archive_repo.commit([TreeSource("dir", str(base)), TreeSource("tar", str(tarball))], branch="o", timestamp=1)
    out = tmp_path / "co"
    archive_repo.checkout(c, out, user_mode=True)
    assert (out / "a").read_bytes() == b"base-a"
    assert (out / "b").read_bytes() == b"tar-b"
    assert (out / "d" / "hl").read_bytes() == b"tar-f"
    assert os.readlink(out / "sym") == "a"
    header, _ = archive_repo.load_file(next(o for p, k, o, _ in archive_repo.walk_tree(c) if p == "/d/f"))
    assert header.xattrs == ((b"user.k", b"v"),)
    c2 = archive_repo.commit([TreeSource("ref", "o"), TreeSource("dir", str(base))], branch="o2", timestamp=1)
    assert [(e.kind, e.path) for e in archive_repo.diff(c, c2)] == [("M", "/b")]
    with pytest.raises(RefNotFound):
        archive_repo.commit([TreeSource("ref", "missing")], branch="x")


def test_commit_options_and_metadata(archive_repo: Repo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {"suid": File(b"x", 0o4755), "w": File(b"w", 0o777)})
    c = archive_repo.commit(
        [tree], branch="os/main", subject="s", timestamp=5,
        metadata=[("version", Variant("s", "42"))], options=CommitOptions(canonical_permissions=True),
    )
    commit = archive_repo.read_commit(c)
    assert commit.version == "42"
    assert [k for k, _ in commit.metadata] == ["version", "ostree.ref-binding"]
    modes = {p: archive_repo.load_file(o)[0].mode for p, k, o, _ in archive_repo.walk_tree(c) if k == "f"}
    assert modes == {"/suid": 0o100755, "/w": 0o100755}
    orphan = archive_repo.commit([tree], timestamp=5, bindings=False)
    assert archive_repo.read_commit(orphan).parent is None
    assert archive_repo.list_refs() == {"os/main": c}
    same = archive_repo.commit([tree], branch="os/main", skip_if_unchanged=True, options=CommitOptions(canonical_permissions=True))
    assert same == c


def test_bare_user_only_forces_canonical_permissions(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER_ONLY)
    tree = make_tree(tmp_path / "t", {"f": File(b"x", 0o4777, {"user.x": b"1"})})
    c = repo.commit([tree], branch="t", timestamp=1)
    (_, _, obj, _), = [e for e in repo.walk_tree(c) if e[1] == "f"]
    header, _ = repo.load_file(obj)
    assert (header.uid, header.gid, header.mode, header.xattrs) == (0, 0, 0o100755, ())
    assert repo.fsck().ok


def test_unsupported_source_types(archive_repo: Repo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {"a": b"a"})
    os.mkfifo(tree / "fifo")
    with pytest.raises(SourceError, match="fifo"):
        archive_repo.commit([tree], branch="t")
    assert archive_repo.list_refs() == {}
    assert list(archive_repo.store.iter_objects()) == []
    with pytest.raises(SourceError):
        archive_repo.commit([tmp_path / "missing"], branch="t")


def test_non_utf8_file_name_is_a_clear_error(archive_repo: Repo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {"ok": b"x"})
    (tree / os.fsdecode(b"bad\xffname")).write_bytes(b"y")
    with pytest.raises(SourceError, match=r"Invalid (/ in )?filename"):
        archive_repo.commit([tree], branch="t")
    assert archive_repo.list_refs() == {}
