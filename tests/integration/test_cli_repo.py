"""The repository CLI end to end, as a user types it (``bootree --repo=R COMMAND ...``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootree.format.objects import ObjectType
from bootree.repo import Repo
from builders import VECTOR_COMMIT, VECTOR_TREE, File, make_tree

pytestmark = pytest.mark.integration


def bootree(*args: str | os.PathLike[str], ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "bootree", *map(os.fspath, args)], capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_vector_commit_and_read_commands(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", VECTOR_TREE)
    repo = tmp_path / "repo"
    bootree(f"--repo={repo}", "init", "--mode=archive")
    out = bootree("commit", f"--repo={repo}", "-b", "test", f"--tree=dir={tree}", "--timestamp=@1700000000",
                  "--subject=subj", "--body=body", "--owner-uid=0", "--owner-gid=0", "--no-xattrs")
    assert out.stdout.strip() == VECTOR_COMMIT
    assert bootree(f"--repo={repo}", "rev-parse", "test").stdout.strip() == VECTOR_COMMIT
    assert bootree(f"--repo={repo}", "refs").stdout.split() == ["test"]
    ls = bootree(f"--repo={repo}", "ls", "-R", "test").stdout.splitlines()
    assert ls == [
        "d00755 0 0      0 /",
        "-00644 0 0      0 /empty",
        "-00644 0 0      6 /hello.txt",
        "l00777 0 0      0 /link -> hello.txt",
        "d00755 0 0      0 /sub",
        "-00755 0 0     18 /sub/run.sh",
    ]
    assert bootree(f"--repo={repo}", "cat", "test", "/hello.txt").stdout == "hello\n"
    log = bootree(f"--repo={repo}", "log", "test").stdout
    assert log.startswith(f"commit {VECTOR_COMMIT}\nContentChecksum:  1bafc10b")
    assert "Date:  2023-11-14 22:13:20 +0000" in log
    show = json.loads(bootree(f"--repo={repo}", "show", "--json", "test").stdout)
    assert show["subject"] == "subj" and show["metadata"] == {"ostree.ref-binding": ["test"]}
    assert bootree(f"--repo={repo}", "fsck").stdout.strip().endswith("no errors found.")


def test_update_diff_checkout_prune(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    bootree("init", f"--repo={repo}", "--mode=bare-user")
    t = make_tree(tmp_path / "t", {"usr/bin/app": File(b"v1", 0o755), "usr/etc/app.conf": b"a=1", "old": b"x"})
    c1 = bootree(f"--repo={repo}", "commit", "-b", "os", str(t), "--add-metadata-string=version=1").stdout.strip()
    (t / "usr/bin/app").write_bytes(b"v2")
    (t / "old").unlink()
    (t / "usr/share").mkdir()
    (t / "usr/share/new").write_bytes(b"n")
    c2 = bootree(f"--repo={repo}", "commit", "-b", "os", str(t), "--add-metadata=version='2'", "--add-metadata=n=uint64 5").stdout.strip()
    diff = bootree(f"--repo={repo}", "diff", c1, c2).stdout.splitlines()
    assert diff == ["M    /usr/bin/app", "D    /old", "A    /usr/share", "A    /usr/share/new"]
    as_json = json.loads(bootree(f"--repo={repo}", "diff", "--json", "os^", "os").stdout)
    assert {"kind": "A", "path": "/usr/share/new"} in as_json
    assert bootree(f"--repo={repo}", "show", "os", "--print-metadata-key=version").stdout.strip() == "'2'"
    history = json.loads(bootree(f"--repo={repo}", "log", "--json", "os").stdout)
    assert [h["version"] for h in history] == ["2", "1"]
    bootree(f"--repo={repo}", "checkout", "-U", "-H", "os", tmp_path / "co")
    assert (tmp_path / "co/usr/bin/app").read_bytes() == b"v2"
    assert os.stat(tmp_path / "co/usr/bin/app").st_nlink == 2
    bootree(f"--repo={repo}", "checkout", "-U", "--subpath=/usr/etc", "os^", tmp_path / "etc")
    assert (tmp_path / "etc/app.conf").read_bytes() == b"a=1"
    bootree(f"--repo={repo}", "refs", "--create=keep", c1)
    bootree(f"--repo={repo}", "refs", "--delete", "keep")
    pruned = bootree(f"--repo={repo}", "prune", "--refs-only", "--depth=0").stdout
    assert "Deleted" in pruned
    assert bootree(f"--repo={repo}", "fsck").returncode == 0


def test_errors_are_one_line(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    r = bootree(f"--repo={repo}", "log", "main", ok=False)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == f"error: no repository at {repo}"
    assert "Traceback" not in r.stderr
    bootree(f"--repo={repo}", "init", "--mode=archive")
    r = bootree(f"--repo={repo}", "log", "main", ok=False)
    assert (r.returncode, r.stderr) == (1, "error: ref or commit 'main' not found\n")
    r = bootree(f"--repo={repo}", "commit", "-b", "../x", str(tmp_path), ok=False)
    assert r.returncode == 1 and r.stderr.startswith("error: Invalid ref name '../x'")
    r = bootree(f"--repo={repo}", "commit", "-b", "x", str(tmp_path / "missing"), ok=False)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "missing" in r.stderr
    r = bootree("--debug", f"--repo={repo}", "log", "main", ok=False)
    assert "Traceback" in r.stderr
    r = bootree(f"--repo={repo}", "commit", ok=False)
    assert r.returncode == 2  # usage error


def test_fsck_exit_status_names_bad_object(tmp_path: Path) -> None:
    repo_path = tmp_path / "repo"
    bootree(f"--repo={repo_path}", "init", "--mode=archive")
    t = make_tree(tmp_path / "t", {"f": os.urandom(5000)})
    c = bootree(f"--repo={repo_path}", "commit", "-b", "m", str(t)).stdout.strip()
    repo = Repo.open(repo_path)
    obj = next(o for p, k, o, _ in repo.walk_tree(c) if k == "f")
    path = repo.object_path(ObjectType.FILE, obj)
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    r = bootree(f"--repo={repo_path}", "fsck", ok=False)
    assert r.returncode == 1
    assert obj in r.stderr
    report = json.loads(bootree(f"--repo={repo_path}", "fsck", "--json", ok=False).stdout)
    assert report["ok"] is False and report["problems"][0]["checksum"] == obj


def test_help_reads_like_a_manual() -> None:
    top = bootree("--help").stdout
    for cmd in ("init", "commit", "checkout", "log", "show", "ls", "cat", "diff", "refs", "rev-parse", "fsck", "prune"):
        assert cmd in top
    commit_help = bootree("commit", "--help").stdout
    for opt in ("--branch", "--subject", "--body", "--parent", "--orphan", "--timestamp", "--owner-uid",
                "--owner-gid", "--no-xattrs", "--canonical-permissions", "--add-metadata-string", "--tree"):
        assert opt in commit_help
