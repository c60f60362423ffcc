"""Odd input gives one ``error:`` line and exit 1, never a traceback (issue 10, defect 7).

The class: whatever the bytes on disk or on the command line, the CLI either works or says
what is wrong in one line. Cases: a tree deeper than Python's recursion limit (every command
that walks a tree: commit, ls -R, checkout in both modes, diff, fsck, prune, a ref overlay);
a repository ``config`` that is not UTF-8; ref files whose names are not UTF-8 (skipped, as
ostree skips them) under heads and remotes; ``log`` and ``show`` of a ref whose commit is
missing (exit 1, as ostree); ``refs --delete`` of refs whose files hold garbage; a
``commit -F`` body that is not UTF-8.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree import _fs
from builders import File, make_tree

pytestmark = pytest.mark.integration

DEPTH = 1100  # deeper than sys.getrecursionlimit() (1000)


def bootree(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bootree", *map(os.fspath, args)], capture_output=True, text=True)


def ok(*args: str | os.PathLike[str]) -> str:
    proc = bootree(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:") or line.startswith("Error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _deep_tree(root: Path, depth: int) -> Path:
    """``root/d/d/.../d/leaf`` ``depth`` directories deep, made through descriptors (a path
    that long cannot be walked with recursive helpers)."""
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"bottom\n")
        os.close(leaf)
    finally:
        os.close(fd)
    return root


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("deep")
    yield _deep_tree(base / "tree", DEPTH)
    _fs.rmtree(base)  # pytest's own cleanup (shutil.rmtree on 3.11) recurses: too deep for it


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    _fs.rmtree(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_tree_deeper_than_the_recursion_limit(scratch: Path, deep: Path, mode: str) -> None:
    tmp_path = scratch
    repo = tmp_path / "repo"
    ok(f"--repo={repo}", "init", f"--mode={mode}")
    ok(f"--repo={repo}", "commit", "-b", "deep", f"--tree=dir={deep}")
    shallow = make_tree(tmp_path / "shallow", {"etc/x": File(b"x")})
    ok(f"--repo={repo}", "commit", "-b", "shallow", str(shallow))
    # ls -R: the root, DEPTH directories and the leaf
    assert len(ok(f"--repo={repo}", "ls", "-R", "deep").splitlines()) == DEPTH + 2
    dest = tmp_path / "co"  # hardlinks from bare-user (two processes), inflated copies from archive
    ok(f"--repo={repo}", "checkout", "-U", "deep", dest)
    assert (dest.joinpath(*["d"] * DEPTH) / "leaf").read_bytes() == b"bottom\n"
    diff = ok(f"--repo={repo}", "diff", "shallow", "deep").splitlines()
    assert len([line for line in diff if line.startswith("A")]) == DEPTH + 1
    assert ok(f"--repo={repo}", "fsck").strip().endswith("no errors found.")
    # an overlay of the deep commit (--tree=ref=) walks it again
    ok(f"--repo={repo}", "commit", "-b", "both", "--tree=ref=deep", f"--tree=dir={shallow}")
    assert len(ok(f"--repo={repo}", "ls", "-R", "both").splitlines()) == DEPTH + 4
    ok(f"--repo={repo}", "refs", "--delete", "deep")
    ok(f"--repo={repo}", "prune", "--refs-only")
    assert len(ok(f"--repo={repo}", "ls", "-R", "both").splitlines()) == DEPTH + 4
    if shutil.which("ostree"):  # the real ostree agrees the repository is sound
        assert subprocess.run(["ostree", f"--repo={repo}", "fsck"], capture_output=True).returncode == 0


def _repo(tmp_path: Path, mode: str = "archive") -> Path:
    repo = tmp_path / "repo"
    ok(f"--repo={repo}", "init", f"--mode={mode}")
    tree = make_tree(tmp_path / "t", {"a": File(b"a")})
    ok(f"--repo={repo}", "commit", "-b", "main", str(tree))
    return repo


@pytest.mark.parametrize("where", ["comment", "value", "group"])
def test_config_not_utf8(tmp_path: Path, where: str) -> None:
    repo = _repo(tmp_path)
    config = (repo / "config").read_bytes()
    extra = {"comment": b"# \xff\n", "value": b"[x]\nk=\xfe\n", "group": b"[\xc3]\n"}[where]
    (repo / "config").write_bytes(config + extra)
    cmds = [["refs"], ["log", "main"], ["commit", "-b", "x", str(tmp_path / "t")]] if where == "comment" else [["fsck"]]
    for cmd in cmds:
        assert "not valid UTF-8" in one_line_error(bootree(f"--repo={repo}", *cmd))


def test_ref_names_not_utf8_are_skipped(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    csum = (repo / "refs/heads/main").read_bytes()
    (repo / "refs/heads" / os.fsdecode(b"ma\xffin")).write_bytes(csum)
    (repo / "refs/heads/os").mkdir()
    (repo / "refs/heads/os" / os.fsdecode(b"\xfe")).write_bytes(csum)
    (repo / "refs/remotes/origin").mkdir(parents=True)
    (repo / "refs/remotes/origin" / os.fsdecode(b"x\xc3")).write_bytes(csum)
    (repo / "refs/remotes/origin/good").write_bytes(csum)
    assert ok(f"--repo={repo}", "refs").split() == ["main", "origin:good"]
    assert '"origin:good"' in ok(f"--repo={repo}", "refs", "--json")
    proc = bootree(f"--repo={repo}", "summary", "-u")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "not UTF-8" in proc.stderr  # said, not silently lost
    assert "* main" in ok(f"--repo={repo}", "summary", "--view")
    if shutil.which("ostree"):  # ostree reads the summary bootree wrote, and skips the same files
        view = subprocess.run(["ostree", f"--repo={repo}", "summary", "-v"], capture_output=True, text=True)
        assert view.returncode == 0 and "* main" in view.stdout


def test_log_and_show_of_a_missing_commit_exit_1(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    missing = "1" * 64
    (repo / "refs/heads/gone").write_text(missing + "\n")
    for cmd in (["log", "gone"], ["log", "--json", "gone"], ["show", "gone"], ["log", missing]):
        assert missing in one_line_error(bootree(f"--repo={repo}", *cmd))
    # a commit whose parent is missing is still history (exit 0), as in a shallow pull
    tree = tmp_path / "t"
    child = ok(f"--repo={repo}", "commit", "-b", "child", f"--parent={ok(f'--repo={repo}', 'rev-parse', 'main').strip()}",
               str(tree)).strip()
    os.unlink(repo / "objects" / (parent := ok(f"--repo={repo}", "rev-parse", "main").strip())[:2] / f"{parent[2:]}.commit")
    assert "History beyond this commit not fetched" in ok(f"--repo={repo}", "log", child)


@pytest.mark.parametrize("garbage", [b"garbage\n", b"0" * 63 + b"\n"], ids=["text", "short-checksum"])
def test_refs_delete_removes_refs_holding_garbage(tmp_path: Path, garbage: bytes) -> None:
    repo = _repo(tmp_path)
    (repo / "refs/heads/bad").write_bytes(garbage)
    (repo / "refs/heads/os").mkdir()
    (repo / "refs/heads/os/bad").write_bytes(garbage)
    (repo / "refs/remotes/origin").mkdir(parents=True)
    (repo / "refs/remotes/origin/junk").write_bytes(garbage)
    one_line_error(bootree(f"--repo={repo}", "refs"))  # listing reads them: a corrupt ref is an error
    ok(f"--repo={repo}", "refs", "--delete", "bad")
    ok(f"--repo={repo}", "refs", "--delete", "os")
    ok(f"--repo={repo}", "refs", "--delete", "--remote=origin", "junk")
    assert ok(f"--repo={repo}", "refs").split() == ["main"]
    assert not (repo / "refs/heads/os").exists()


def test_commit_body_file_not_utf8(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    body = tmp_path / "body"
    body.write_bytes(b"caf\xe9\n")
    assert "not valid UTF-8" in one_line_error(bootree(f"--repo={repo}", "commit", "-b", "x", "-F", body,
                                                         str(tmp_path / "t")), code=2)


@pytest.mark.parametrize("args", [
    ["--timestamp=@99999999999999999999"],
    ["--owner-uid=-5"], ["--owner-gid=99999999999"],
    ["--add-metadata-string=k=" + os.fsdecode(b"\xff")], ["--subject=" + os.fsdecode(b"caf\xe9")],
], ids=["ts-huge", "uid-negative", "gid-huge", "meta-not-utf8", "subject-not-utf8"])
# A date before 1970 is not refused: ostree stores it (as the uint64 of its two's complement)
# and so does bootree, with the same checksum (tests/compat/test_suite_repo_compat.py).
def test_commit_values_out_of_range(tmp_path: Path, args: list[str]) -> None:
    repo = _repo(tmp_path)
    proc = bootree(f"--repo={repo}", "commit", "-b", "x", str(tmp_path / "t"), *args)
    one_line_error(proc, code=proc.returncode)
    assert proc.returncode in (1, 2)
    assert ok(f"--repo={repo}", "refs").split() == ["main"]  # nothing was committed


def test_remote_url_not_utf8(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    config = (repo / "config").read_bytes()
    assert "not valid UTF-8" in one_line_error(
        bootree(f"--repo={repo}", "remote", "add", "o", "http://" + os.fsdecode(b"x\xff") + "/"))
    assert (repo / "config").read_bytes() == config
