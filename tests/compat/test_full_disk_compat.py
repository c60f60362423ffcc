"""A commit that hits a full disk (issue 10, defect 1): it fails cleanly and leaves nothing bad.

The repository lives on a small tmpfs; the commit of a larger tree must fail with one
``error:`` line, leave no zero-length or unverified object under ``objects/`` (so both
bootree's and the real ``ostree fsck`` pass), move no ref, and after the file system is
enlarged the same commit succeeds and checks out equal to the source. Archive and bare-user
repositories (the two modes whose objects are written differently: compressed with a header,
and plain files with an xattr).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree.repo import Repo, RepoMode
from builders import snapshot
from conftest import require_root

pytestmark = [pytest.mark.compat, pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    require_root()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _source(root: Path) -> Path:
    """~6 MB of incompressible files in nested directories (dirtrees and dirmetas too)."""
    rng = random.Random(7)
    for d in range(12):
        sub = root / f"dir{d}" / "nested"
        sub.mkdir(parents=True)
        os.chmod(sub.parent, 0o750 if d % 2 else 0o755)
        for f in range(25):
            (sub / f"f{f}").write_bytes(rng.randbytes(rng.randint(1, 40_000)))
        (root / f"dir{d}" / "link").symlink_to(f"nested/f{d}")
        (root / f"dir{d}" / "empty").write_bytes(b"")
    return root


def _bootree(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bootree", *map(os.fspath, args)], capture_output=True, text=True)


def _bad_objects(repo: Path) -> list[str]:
    bad = []
    for dirpath, _, files in os.walk(repo / "objects"):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink() and path.stat().st_size == 0 and not name.endswith(".file"):
                bad.append(str(path))  # a zero-length metadata or .filez object is never valid
    return bad


@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER], ids=lambda m: m.value)
def test_commit_on_full_disk_fails_cleanly_and_retry_succeeds(
    small_fs: Path, tmp_path: Path, ostree: str, mode: RepoMode
) -> None:
    repo_path = small_fs / "repo"
    repo = Repo.init(repo_path, mode=mode)
    src = _source(tmp_path / "src")
    small = tmp_path / "small"
    small.mkdir()
    (small / "a").write_bytes(b"first")
    c1 = repo.commit([small], branch="main", timestamp=1)

    proc = _bootree("--repo", repo_path, "commit", "-b", "main", "--tree", f"dir={src}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "No space left on device" in lines[0]

    repo = Repo.open(repo_path)
    assert repo.list_refs() == {"main": c1}
    assert _bad_objects(repo_path) == []
    assert repo.fsck().ok
    check = subprocess.run([ostree, "fsck", f"--repo={repo_path}"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
    proc = _bootree("--repo", repo_path, "commit", "-b", "main", "--tree", f"dir={src}")
    assert proc.returncode == 0, proc.stderr
    repo = Repo.open(repo_path)
    c2 = repo.resolve_rev("main")
    assert repo.read_commit(c2).parent == c1
    assert repo.fsck().ok
    check = subprocess.run([ostree, "fsck", f"--repo={repo_path}"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    out = tmp_path / "co"
    repo.checkout(c2, out, user_mode=True)
    assert snapshot(out, owners=False) == snapshot(src, owners=False)
    # nothing of the failed attempt is left in tmp/ once a later transaction ran
    assert [p.name for p in (repo_path / "tmp").iterdir() if p.name.startswith("staging-")] == []


@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER], ids=lambda m: m.value)
def test_checkpoint_after_full_disk_publishes_only_complete_objects(small_fs: Path, ostree: str, mode: RepoMode) -> None:
    # What a pull does when the disk fills: it checkpoints what arrived, then fails. Every
    # object that becomes visible must be complete; the one whose write failed must not.
    import hashlib

    from bootree.format.checksum import Checksum, ObjectType
    from bootree.format.content import ContentFraming, deflate_chunks, encode_archive_header
    from bootree.format.objects import DirMeta, DirTree, FileHeader
    from bootree.format.verified import VerifiedMetadata

    repo = Repo.init(small_fs / "repo", mode=mode)
    rng = random.Random(3)
    header = FileHeader(0, 0, 0o100644)
    failed: tuple[ObjectType, Checksum] | None = None
    with pytest.raises(OSError, match="No space left"), repo.transaction() as txn:
        for i in range(10_000):
            content = rng.randbytes(rng.randint(1000, 30_000))
            csum = header.checksum(content)
            filez = encode_archive_header(header, len(content)) + b"".join(deflate_chunks([content], 0))
            tree = VerifiedMetadata.of(DirTree(files=tuple((f"f{j:03d}", csum) for j in range(i % 50 + 1))))
            meta = VerifiedMetadata.of(DirMeta(0, 0, 0o40000 | (0o700 + i % 50)))
            try:
                failed = (ObjectType.FILE, csum)
                with txn.stream_content(ContentFraming.ARCHIVED, csum) as w:
                    for k in range(0, len(filez), 8192):
                        w.write(filez[k : k + 8192])
                    w.finish()
                for m in (tree, meta):
                    failed = (m.otype, m.checksum)
                    txn.write_metadata(m)
            except OSError:
                txn.checkpoint()
                raise
            if i % 20 == 0:
                txn.checkpoint()
    assert failed is not None and not repo.has_object(*failed)
    assert not repo.object_path(*failed).exists()
    assert _bad_objects(repo.path) == []
    visible = list(repo.store.iter_objects())
    assert len(visible) > 20
    for otype, c in visible:
        if otype is ObjectType.FILE:
            repo.store.verify_file(c)
        else:
            assert hashlib.sha256(repo.load_metadata(otype, c)).hexdigest() == c
    check = subprocess.run([ostree, "fsck", f"--repo={repo.path}"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
