"""Bad input loses nothing: corrupt objects, unsafe trees, unreadable sources, crashes mid-commit."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bootree.errors import (
    ChecksumMismatch,
    CorruptObject,
    InvalidRefName,
    ObjectMissing,
    RefConflict,
    SourceError,
)
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader, ObjectType
from bootree.format.verified import VerifiedMetadata
from bootree.repo import Repo, RepoMode
from builders import VECTOR_TREE, File, Link, make_tree


def repo_state(repo: Repo) -> tuple[object, ...]:
    """Everything that must not change when an operation fails."""
    objects = sorted((t.value, c) for t, c in repo.store.iter_objects())
    staging = sorted(p.name for p in (repo.path / "tmp").iterdir() if p.name.startswith("staging-"))
    return objects, repo.list_refs(), staging


@pytest.fixture
def committed(tmp_path: Path, any_mode: RepoMode) -> tuple[Repo, Checksum]:
    repo = Repo.init(tmp_path / "repo", mode=any_mode)
    tree = make_tree(tmp_path / "tree", {**VECTOR_TREE, "big": File(os.urandom(200_000))})
    return repo, repo.commit([tree], branch="main", timestamp=1)


def file_objects(repo: Repo, c: Checksum) -> dict[str, Checksum]:
    return {p: o for p, k, o, _ in repo.walk_tree(c) if k == "f"}


def test_fsck_reports_bit_flip_by_checksum(committed: tuple[Repo, Checksum]) -> None:
    repo, c = committed
    obj = file_objects(repo, c)["/big"]
    path = repo.object_path(ObjectType.FILE, obj)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    result = repo.fsck()
    assert not result.ok
    assert [p.checksum for p in result.problems] == [obj]


def test_fsck_reports_truncated_metadata(committed: tuple[Repo, Checksum]) -> None:
    repo, c = committed
    tree = repo.read_commit(c).root_tree
    path = repo.object_path(ObjectType.DIR_TREE, tree)
    path.write_bytes(path.read_bytes()[:-5])
    result = repo.fsck()
    assert tree in [p.checksum for p in result.problems]


def test_fsck_reports_truncated_archive_content(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    c = repo.commit([make_tree(tmp_path / "t", {"f": os.urandom(50_000)})], branch="m", timestamp=1)
    obj = file_objects(repo, c)["/f"]
    path = repo.object_path(ObjectType.FILE, obj)
    path.write_bytes(path.read_bytes()[:1000])
    problems = repo.fsck().problems
    assert [p.checksum for p in problems] == [obj]
    assert "truncated" in problems[0].message


@pytest.mark.parametrize("size", [0, 3000, 3 << 20])
def test_fsck_reads_archive_content_whole_or_streamed_alike(tmp_path: Path, size: int) -> None:
    # Objects up to a megabyte are read and inflated in one piece, larger ones streamed: a
    # damaged body is found either way, and an intact one passes.
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    c = repo.commit([make_tree(tmp_path / "t", {"f": os.urandom(size), "l": Link("f")})], branch="m", timestamp=1)
    assert repo.fsck().ok
    obj = file_objects(repo, c)["/f"]
    path = repo.object_path(ObjectType.FILE, obj)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    assert [p.checksum for p in repo.fsck().problems] == [obj]


def test_fsck_reports_missing_object_and_dangling_ref(committed: tuple[Repo, Checksum]) -> None:
    repo, c = committed
    obj = file_objects(repo, c)["/hello.txt"]
    os.unlink(repo.object_path(ObjectType.FILE, obj))
    (repo.path / "refs/heads/dangling").write_text("ab" * 32 + "\n")
    result = repo.fsck()
    found = {p.checksum for p in result.problems}
    assert obj in found and "dangling" in found


def test_non_normal_form_metadata_is_rejected(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    meta = DirMeta(0, 0, 0o40755).to_bytes()
    tree = DirTree().to_bytes()
    good = Commit(root_tree=Checksum(hashlib.sha256(tree).hexdigest()), root_meta=Checksum(hashlib.sha256(meta).hexdigest()))
    data = good.to_bytes()
    # Non-zero padding byte: GLib would read it, but it is not normal form.
    bad = data.replace(b"\0\0\0\0\0\0\0\0", b"\0\0\0\0\0\0\0\x01", 1)
    assert bad != data
    before = repo_state(repo)
    with pytest.raises(CorruptObject, match=r"normal form|commit"), repo.transaction() as txn:
        txn.write_metadata(VerifiedMetadata.parse(ObjectType.COMMIT, bad))
    assert repo_state(repo) == before


def test_wrong_checksum_is_rejected_and_nothing_lands(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    before = repo_state(repo)
    with pytest.raises(ChecksumMismatch), repo.transaction() as txn:
        txn.write_file(FileHeader(0, 0, 0o100644), b"one")
        txn.set_ref("main", Checksum("00" * 32))
        txn.write_file(FileHeader(0, 0, 0o100644), b"two", expected=Checksum("ff" * 32))
    assert repo_state(repo) == before


def test_dirtree_with_dotdot_is_refused_on_checkout_and_fsck(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    meta = DirMeta(0, 0, 0o40755).to_bytes()
    file_csum = FileHeader(0, 0, 0o100644).checksum(b"pwned")
    good = DirTree(files=(("xx", file_csum),)).to_bytes()
    for name in (b"..", b"a/"):
        evil = good.replace(b"xx\0", name + b"\0")
        evil_csum = Checksum(hashlib.sha256(evil).hexdigest())
        # The transaction API refuses to store it...
        with pytest.raises(CorruptObject, match=r"Invalid (/ in )?filename"), repo.transaction() as txn:
            txn.write_metadata(VerifiedMetadata.parse(ObjectType.DIR_TREE, evil))
        # ...and a repository that has it anyway (written behind our back) cannot check it out.
        with repo.transaction() as txn:
            txn.write_file(FileHeader(0, 0, 0o100644), b"pwned")
            meta_csum = txn.write_metadata(VerifiedMetadata.parse(ObjectType.DIR_META, meta))
        path = repo.object_path(ObjectType.DIR_TREE, evil_csum)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(evil)
        with repo.transaction() as txn:
            c = txn.write_commit(Commit(root_tree=evil_csum, root_meta=meta_csum))
        dest = tmp_path / f"co-{name.hex()}"
        with pytest.raises(CorruptObject, match=evil_csum):
            repo.checkout(c, dest)
        assert not dest.exists()
        assert not (tmp_path / "xx").exists() and not (tmp_path / "pwned").exists()
        assert evil_csum in {p.checksum for p in repo.fsck().problems}


def test_unreadable_source_file_changes_nothing(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {"ok": b"fine", "secret": File(b"s", 0o000)})
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    before = repo_state(repo)
    if os.geteuid() == 0:
        # root reads mode-000 files: run the commit without the DAC override capabilities.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop root's read override")
        code = textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            from bootree.repo import Repo
            from bootree.errors import SourceError
            try:
                Repo.open({str(repo.path)!r}).commit([Path({str(tree)!r})], branch="main")
            except SourceError as e:
                print(e); sys.exit(3)
            """
        )
        proc = subprocess.run(
            [setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", code],
            capture_output=True, text=True,
        )
        assert proc.returncode == 3, proc.stderr
        assert "secret" in proc.stdout and "Permission denied" in proc.stdout
    else:
        with pytest.raises(SourceError, match=r"secret.*Permission denied"):
            repo.commit([tree], branch="main")
    assert repo_state(repo) == before


def test_refs_compare_and_swap(committed: tuple[Repo, Checksum]) -> None:
    repo, c = committed
    repo.set_ref("other", c, expected=None)
    with pytest.raises(RefConflict):
        repo.set_ref("other", c, expected=None)
    repo.set_ref("other", None, expected=c)
    assert "other" not in repo.list_refs()
    with pytest.raises(InvalidRefName):
        repo.set_ref("../escape", c)
    assert not (repo.path / "refs" / "escape").exists()
    repo.set_ref("origin:os/main", c)
    assert repo.list_refs(remote="origin") == {"origin:os/main": c}
    assert repo.resolve_rev("origin:os/main") == c
    assert repo.resolve_rev(c[:10]) == c
    assert (repo.path / "refs/remotes/origin/os/main").read_text() == c + "\n"


CRASHER = """
import os, signal, sys
from pathlib import Path
from bootree.repo import Repo, transaction
point = sys.argv[3]
orig_rename = os.rename
count = 0
def rename(src, dst, *a, **k):
    global count
    count += 1
    if point == "publish" and "objects" in str(dst) and "staging" not in str(dst) and count > 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig_rename(src, dst, *a, **k)
transaction.os.rename = rename
orig_write = transaction.Transaction.write_content
def write_content(self, *a, **k):
    if point == "write" and self.objects_written > 20:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig_write(self, *a, **k)
transaction.Transaction.write_content = write_content
Repo.open(sys.argv[1]).commit([Path(sys.argv[2])], branch="main", timestamp=2)
"""


@pytest.mark.parametrize("point", ["write", "publish"])
def test_crash_during_commit_keeps_repo_consistent(tmp_path: Path, point: str) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    t1 = make_tree(tmp_path / "t1", {f"f{i}": os.urandom(100) for i in range(10)})
    c1 = repo.commit([t1], branch="main", timestamp=1)
    t2 = make_tree(tmp_path / "t2", {f"g{i}": os.urandom(3000) for i in range(60)})
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(repo.path), str(t2), point], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    repo = Repo.open(repo.path)
    assert repo.list_refs() == {"main": c1}
    assert repo.fsck().ok  # no half-written object is ever visible under objects/
    for otype, csum in repo.store.iter_objects():
        if otype is ObjectType.FILE:
            repo.store.verify_file(csum)
    # and a rerun succeeds
    c2 = repo.commit([t2], branch="main", timestamp=2)
    assert repo.read_commit(c2).parent == c1
    assert repo.fsck().ok


def test_checkout_failure_leaves_no_partial_destination(committed: tuple[Repo, Checksum], tmp_path: Path) -> None:
    repo, c = committed
    obj = file_objects(repo, c)["/hello.txt"]
    os.unlink(repo.object_path(ObjectType.FILE, obj))
    dest = tmp_path / "dest"
    with pytest.raises(ObjectMissing):
        repo.checkout(c, dest, user_mode=True)
    assert not dest.exists()
