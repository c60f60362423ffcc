"""Against the real ostree: same checksums, ostree fscks our repos, checkouts agree both ways.

Trees are generated from seeds (nested and empty dirs, symlinks, odd but valid names, modes,
``user.*`` xattrs, empty and multi-MB files; real owners when run as root), committed by both
tools into each repository mode with the same parameters.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from bootree.repo import CommitOptions, Repo, RepoMode
from builders import snapshot

pytestmark = pytest.mark.compat

NAMES = ["a", "b b", "-dash", "名前", "ünï", "x" * 200, "#hash", "'q'", "dot.d", "UPPER", "_u", "a=b", "!"]
MODES = [0o644, 0o755, 0o600, 0o640, 0o750, 0o444, 0o4755, 0o2755, 0o1777]


def random_tree(root: Path, seed: int, *, big: bool) -> Path:
    rng = random.Random(seed)
    root.mkdir()
    dirs = [root]
    is_root = os.geteuid() == 0
    for i in range(rng.randint(5, 25)):
        parent = rng.choice(dirs)
        name = rng.choice(NAMES) + (str(i) if rng.random() < 0.7 else "")
        path = parent / name
        if path.exists() or path.is_symlink():
            continue
        kind = rng.random()
        if kind < 0.25:
            path.mkdir()
            os.chmod(path, rng.choice([0o755, 0o700, 0o750, 0o1777]))
            dirs.append(path)
        elif kind < 0.4:
            os.symlink(rng.choice(["a", "../x", "/etc/passwd", "name with space", "d/" * 5 + "z"]), path)
        else:
            size = rng.choice([0, 1, 17, 4096, 65537])
            path.write_bytes(rng.randbytes(size))
            os.chmod(path, rng.choice(MODES))
            if rng.random() < 0.3:
                os.setxattr(path, "user.test", rng.randbytes(rng.randint(1, 30)))
                os.setxattr(path, "user.alpha", b"1")
        if is_root and rng.random() < 0.3:
            os.lchown(path, rng.choice([0, 1, 42, 1000]), rng.choice([0, 42, 50]))
    if big:
        (root / "big.bin").write_bytes(rng.randbytes(3 << 20))
        (root / "empty").write_bytes(b"")
    if rng.random() < 0.5:
        os.setxattr(root, "user.rootdir", b"yes")
    return root


def run_ostree(*args: str | os.PathLike[str]) -> str:
    proc = subprocess.run(["ostree", *map(os.fspath, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


CASES = [(mode, seed) for mode in RepoMode for seed in range(4)]


@pytest.mark.parametrize(("mode", "seed"), CASES, ids=[f"{m.value}-{s}" for m, s in CASES])
def test_same_checksums_and_cross_checkout(ostree: str, tmp_path: Path, mode: RepoMode, seed: int) -> None:
    if mode is RepoMode.BARE and os.geteuid() != 0:
        pytest.skip("bare repositories need root")
    tree = random_tree(tmp_path / "tree", seed, big=seed == 0)
    canonical = mode is RepoMode.BARE_USER_ONLY
    extra = ["--canonical-permissions"] if canonical else []
    ours = Repo.init(tmp_path / "ours", mode=mode)
    theirs = tmp_path / "theirs"
    run_ostree("init", f"--repo={theirs}", f"--mode={mode.value}")

    c_ours = ours.commit(
        [tree], branch="t", subject="s", body="b", timestamp=1700000000,
        options=CommitOptions(canonical_permissions=canonical),
    )
    c_theirs = run_ostree("commit", f"--repo={theirs}", "-b", "t", "-s", "s", "-m", "b", "--timestamp=@1700000000",
                      *extra, f"--tree=dir={tree}")
    assert c_ours == c_theirs

    # ostree validates what we wrote; we validate what it wrote.
    assert "no errors found" in run_ostree("fsck", f"--repo={ours.path}")
    theirs_repo = Repo.open(theirs)
    assert theirs_repo.fsck().ok

    # Cross checkouts: ostree checks out our commit, we check out theirs; the trees agree.
    user = mode in (RepoMode.BARE_USER, RepoMode.BARE_USER_ONLY) or os.geteuid() != 0
    flags = ["-U"] if user else []
    run_ostree("checkout", f"--repo={ours.path}", *flags, "t", tmp_path / "by-ostree")
    theirs_repo.checkout(c_theirs, tmp_path / "by-bootree", user_mode=user)
    a = snapshot(tmp_path / "by-ostree", owners=not user, xattrs=not user)
    b = snapshot(tmp_path / "by-bootree", owners=not user, xattrs=not user)
    assert a == b
    if not user and not canonical:
        assert a == snapshot(tree)


def test_ostree_reads_our_refs_log_and_diff(ostree: str, tmp_path: Path) -> None:
    ours = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    t1 = random_tree(tmp_path / "t1", 11, big=False)
    c1 = ours.commit([t1], branch="os/main", subject="v1", timestamp=1700000000)
    (t1 / "added").write_bytes(b"new")
    c2 = ours.commit([t1], branch="os/main", subject="v2", timestamp=1700000100)
    ours.set_ref("origin:os/main", c1)
    assert sorted(run_ostree("refs", f"--repo={ours.path}").splitlines()) == ["origin:os/main", "os/main"]
    assert run_ostree("rev-parse", f"--repo={ours.path}", "os/main^") == c1
    assert "A    /added" in run_ostree("diff", f"--repo={ours.path}", c1, c2)
    log = run_ostree("log", f"--repo={ours.path}", "os/main")
    assert log.count("commit ") == 2


def test_we_read_ostree_tar_commit(ostree: str, tmp_path: Path) -> None:
    import tarfile

    tree = random_tree(tmp_path / "tree", 21, big=False)
    tarball = tmp_path / "t.tar"
    with tarfile.open(tarball, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(tree, arcname=".")
    theirs = tmp_path / "theirs"
    run_ostree("init", f"--repo={theirs}", "--mode=archive")
    c_theirs = run_ostree("commit", f"--repo={theirs}", "-b", "t", "--timestamp=@1700000000", "--no-xattrs",
                      f"--tree=tar={tarball}")
    ours = Repo.init(tmp_path / "ours", mode=RepoMode.ARCHIVE)
    from bootree.repo import TreeSource

    c_ours = ours.commit([TreeSource("tar", str(tarball))], branch="t", timestamp=1700000000,
                         options=CommitOptions(no_xattrs=True))
    assert c_ours == c_theirs


def test_repo_lock_interoperates_with_ostree(ostree: str, tmp_path: Path) -> None:
    # ostree takes an exclusive OFD lock on .lock for prune; our transaction holds a shared one.
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    repo.config.set("core", "lock-timeout-secs", "1")
    repo.save_config()
    with repo.transaction():
        proc = subprocess.run(["ostree", "prune", f"--repo={repo.path}", "--refs-only"], capture_output=True, text=True)
        assert proc.returncode == 1 and "Locking repo exclusive failed" in proc.stderr
    assert subprocess.run(["ostree", "prune", f"--repo={repo.path}", "--refs-only"], capture_output=True).returncode == 0
