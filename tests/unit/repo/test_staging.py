"""Staging directories (issue 10, defect 5): a killed writer's are removed, a live one's never.

Every transaction locks its ``tmp/staging-*`` directory (an OFD lock on ``<dir>-lock``, as
libostree does); the next transaction and ``prune`` remove every staging directory whose lock
they can take, and leave a locked one alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootree.repo import Repo, RepoMode
from bootree.repo.staging import Staging, boot_id, clean_stale
from builders import make_tree

KILLED_COMMIT = r"""
import os, signal, sys
from pathlib import Path
from bootree.repo import Repo, transaction
orig = transaction.Transaction.write_content
def write_content(self, *a, **k):
    if self.objects_written > 30:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(self, *a, **k)
transaction.Transaction.write_content = write_content
Repo.open(sys.argv[1]).commit([Path(sys.argv[2])], branch="main", timestamp=2)
"""

HOLD = r"""
import sys, time
from bootree.repo import Repo
repo = Repo.open(sys.argv[1])
with repo.transaction() as txn:
    from bootree.format.objects import FileHeader
    txn.write_file(FileHeader(0, 0, 0o100644), b"held")
    print(txn.staging, flush=True)
    sys.stdin.readline()
"""


def _staging(repo: Repo) -> list[str]:
    return sorted(p.name for p in (repo.path / "tmp").iterdir() if p.name.startswith("staging-"))


def test_killed_commit_leaves_staging_that_the_next_commit_removes(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    src = make_tree(tmp_path / "src", {f"d/f{i}": os.urandom(2000) for i in range(80)})
    proc = subprocess.run([sys.executable, "-c", KILLED_COMMIT, str(repo.path), str(src)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    left = _staging(repo)
    assert any(not n.endswith("-lock") for n in left), left  # the killed commit's directory
    stale = [repo.path / "tmp" / n for n in left if not n.endswith("-lock")]
    assert any(os.listdir(p) for p in stale)  # with objects in it
    c = repo.commit([src], branch="main", timestamp=3)
    assert _staging(repo) == []
    assert repo.fsck().ok and repo.resolve_rev("main") == c


def test_prune_removes_stale_staging(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    src = make_tree(tmp_path / "src", {f"f{i}": os.urandom(500) for i in range(60)})
    proc = subprocess.run([sys.executable, "-c", KILLED_COMMIT, str(repo.path), str(src)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert _staging(repo)
    repo.prune()
    assert _staging(repo) == []


def test_live_transaction_staging_is_never_removed(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(repo.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        live = Path(holder.stdout.readline().strip())
        assert live.is_dir()
        old = time.time() - 10 * 86400
        os.utime(live, (old, old))  # even when ancient
        src = make_tree(tmp_path / "src", {"a": b"1"})
        repo.commit([src], branch="main", timestamp=1)  # a concurrent transaction cleans tmp/
        # (prune waits for the live transaction: it takes the repository lock exclusively)
        assert clean_stale(repo.path / "tmp").staging_dirs == 0
        assert live.is_dir() and os.listdir(live)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert _staging(repo) == []
    assert repo.fsck().ok


def test_in_process_staging_lock_and_other_boots(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    live = Staging(tmp)
    # A directory of another boot with its lock file, and one without any lock file that is old.
    other = tmp / "staging-otherboot-abc"
    other.mkdir()
    (tmp / "staging-otherboot-abc-lock").write_bytes(b"")
    (other / "obj").write_bytes(b"x")
    orphan = tmp / "staging-x-unlocked"
    orphan.mkdir()
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = tmp / f"staging-{boot_id()}-justmade"
    fresh.mkdir()  # maybe a writer of this boot between mkdir and lock: left alone for a while
    (tmp / "staging-y-justmade").mkdir()  # of another boot: no writer can be alive
    expired = tmp / "fetch-tmp-file"
    expired.write_bytes(b"x")
    os.utime(expired, (time.time() - 2 * 86400,) * 2)
    (tmp / "cache").mkdir()
    result = clean_stale(tmp)
    assert result.staging_dirs == 3 and result.other == 1
    assert sorted(p.name for p in tmp.iterdir()) == sorted(
        ["cache", live.path.name, live.path.name + "-lock", fresh.name]
    )
    live.remove()
    assert sorted(p.name for p in tmp.iterdir()) == ["cache", fresh.name]


def test_abandoned_staging_is_taken_over_by_this_boot_and_removed_by_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libostree's protocol: a failed transaction leaves its directory (no lock file); the next
    one of the same boot takes it over (emptied), one of a later boot deletes it."""
    tmp = tmp_path / "tmp"
    monkeypatch.setenv("OSTREE_BOOTID", "boot-a")
    first = Staging(tmp)
    (first.path / "leftover").write_bytes(b"x")
    first.abandon()
    assert sorted(p.name for p in tmp.iterdir()) == [first.path.name]
    again = Staging(tmp)  # same boot: adopted, emptied
    assert again.path == first.path and os.listdir(again.path) == []
    held = Staging(tmp)  # the adopted one is locked now: a new directory
    assert held.path != again.path
    held.remove()
    again.abandon()
    monkeypatch.setenv("OSTREE_BOOTID", "boot-b")
    assert clean_stale(tmp).staging_dirs == 1  # another boot's: removed at once
    assert list(tmp.iterdir()) == []
