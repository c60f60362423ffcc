"""Repository behaviour the libostree suite's prune, basic and libarchive tests found different.

Each test runs one scenario with the real ``ostree`` and with ``bootree``, in fresh
directories, and compares what a script would see: tombstone objects and the config they turn
on, which commits a prune keeps, commit checksums of archives imported with ostree's filters,
``diff`` against a directory, ``export`` archives, ``--consume`` adoption, the User-Agent a pull
sends.
"""

from __future__ import annotations

import http.server
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import ClassVar

import pytest
from tests.compat.test_cli_compat import each, http_server, init, make_tree, run

pytestmark = pytest.mark.compat


def _objects(repo: Path, ext: str) -> dict[str, bytes]:
    return {p.parent.name + p.name.split(".")[0]: p.read_bytes() for p in sorted((repo / "objects").glob(f"*/*.{ext}"))}


def _history(tool: str, repo: str, tree: Path, n: int, branch: str = "main", start: int = 1000) -> list[str]:
    out = []
    for i in range(n):
        (tree / "f").write_text(f"{i}\n")
        out.append(run(tool, repo, "commit", "-b", branch, f"--timestamp=@{start + i}", f"--tree=dir={tree}").stdout.strip())
    return out


def test_tombstones_from_fsck_and_delete_commit(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> tuple[object, ...]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        commits = _history(tool, repo, make_tree(w / "tree"), 4)
        run(tool, repo, "prune", "--refs-only", "--depth=2")  # keeps 3..1; 1's parent is gone
        added = run(tool, repo, "fsck", "--add-tombstones").stdout
        after_fsck = _objects(w / "repo", "tombstone-commit")
        config_on = "tombstone-commits=true" in (w / "repo" / "config").read_text()
        run(tool, repo, "prune", "--delete-commit", commits[2])  # not a ref's
        refused = run(tool, repo, "prune", "--delete-commit", commits[3], check=False).returncode
        return (
            [line for line in added.splitlines() if line.startswith("Adding tombstone")],
            after_fsck,
            config_on,
            _objects(w / "repo", "tombstone-commit"),
            sorted(_objects(w / "repo", "commit")),
            refused,
        )

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]
    assert got["ostree"][1]  # a tombstone was written


def test_recommitting_a_deleted_commit_removes_its_tombstone(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> tuple[int, int]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        tree = make_tree(w / "tree")
        first = run(tool, repo, "commit", "--orphan", "--timestamp=@5", f"--tree=dir={tree}").stdout.strip()
        run(tool, repo, "prune", "--delete-commit", first)
        before = len(_objects(w / "repo", "tombstone-commit"))
        run(tool, repo, "commit", "--orphan", "--timestamp=@5", f"--tree=dir={tree}")
        return before, len(_objects(w / "repo", "tombstone-commit"))

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == (1, 0)


@pytest.mark.parametrize(
    "args",
    [
        ["--keep-younger-than=@1002"],
        ["--keep-younger-than=@1002", "--refs-only"],
        ["--only-branch=dev", "--depth=0"],
        ["--only-branch=dev", "--depth=0", "--retain-branch-depth=stable=1"],
        ["--retain-branch-depth=stable=-1", "--depth=0"],
        ["--commit-only", "--refs-only", "--depth=1"],
    ],
)
def test_prune_roots(tmp_path: Path, ostree: str, args: list[str]) -> None:
    def scenario(tool: str, w: Path) -> tuple[list[str], int, str]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        tree = make_tree(w / "tree")
        _history(tool, repo, tree, 4, "stable")
        _history(tool, repo, tree, 4, "dev", start=2000)
        files = len(_objects(w / "repo", "filez"))
        out = run(tool, repo, "prune", *args).stdout
        total = next(line for line in out.splitlines() if line.startswith("Total"))
        return sorted(_objects(w / "repo", "commit")), files - len(_objects(w / "repo", "filez")), total.split(":")[0]

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def test_prune_errors(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> list[str]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        _history(tool, repo, make_tree(w / "tree"), 2)
        errs = []
        for args in (["--retain-branch-depth=main=BACON", "--depth=0"], ["--only-branch=BACON"],
                     ["--static-deltas-only", "--keep-younger-than=@5"]):
            r = run(tool, repo, "prune", *args, check=False)
            errs.append(f"{r.returncode} {'Invalid depth BACON' in r.stderr} {'BACON' in r.stderr and 'not found' in r.stderr}"
                        f" {'--static-deltas-only requires --delete-commit' in r.stderr}")
        return errs

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def _archive_tree(root: Path) -> Path:
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "lib").mkdir()
    (root / "usr" / "bin" / "foo").write_text("contents\n")
    os.link(root / "usr" / "bin" / "foo", root / "usr" / "bin" / "bar")
    os.symlink("foo", root / "usr" / "bin" / "sl")
    (root / "usr" / "bin" / "setuidme").write_text("setuidme\n")
    (root / "usr" / "bin" / "skipme").write_text("skipme\n")
    (root / "usr" / "lib" / "libfoo.so").write_text("a library\n")
    for p in root.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(root, 0o755)
    return root


def _tar(src: Path, dest: Path, *, root_entry: bool = True) -> Path:
    with tarfile.open(dest, "w:gz", format=tarfile.GNU_FORMAT) as tf:
        for p in sorted(src.rglob("*")) if not root_entry else [src]:
            tf.add(p, arcname=os.path.relpath(p, src) if not root_entry else ".", recursive=root_entry)
    return dest


def _cpio(src: Path, dest: Path) -> Path:
    """A newc archive of ``src`` (GNU cpio's layout: a hardlink group's data with its last name)."""
    out = io.BytesIO()
    entries = [src, *sorted(src.rglob("*"))]
    by_inode: dict[int, list[Path]] = {}
    for p in entries:
        by_inode.setdefault(os.lstat(p).st_ino, []).append(p)
    for p in entries:
        st = os.lstat(p)
        name = "." if p == src else "./" + os.path.relpath(p, src)
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(p).encode()
        elif stat.S_ISREG(st.st_mode):
            group = by_inode[st.st_ino]
            data = p.read_bytes() if p == group[-1] else b""
        else:
            data = b""
        fields = [st.st_ino, st.st_mode, 0, 0, st.st_nlink, 0, len(data), 0, 1, 0, 0, len(name) + 1, 0]
        _cpio_record(out, fields, name, data)
    _cpio_record(out, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0], "TRAILER!!!", b"")
    dest.write_bytes(out.getvalue())
    return dest


def _cpio_record(out: io.BytesIO, fields: list[int], name: str, data: bytes) -> None:
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    out.write(head + b"\0" * (-len(head) % 4))
    out.write(data + b"\0" * (-len(data) % 4))


@pytest.mark.parametrize(
    "case",
    ["tar", "cpio", "stdin", "filter-prefix", "filter-rename", "autocreate-empty", "statoverride-dir"],
)
def test_archive_commit_checksums(tmp_path: Path, ostree: str, case: str) -> None:
    src = _archive_tree(tmp_path / "src")
    tgz = _tar(src, tmp_path / "foo.tar.gz")
    cpio = _cpio(src, tmp_path / "foo.cpio")
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    (tmp_path / "so.txt").write_text("2048 /usr/bin/setuidme\n=384 /usr/lib/libfoo.so\n")
    (tmp_path / "skip.txt").write_text("/usr/bin/skipme\n")
    (tmp_path / "so-prefix.txt").write_text("2048 /foo/usr/bin/setuidme\n")
    rules = [f"--statoverride={tmp_path / 'so.txt'}", f"--skip-list={tmp_path / 'skip.txt'}"]
    owner = ["--owner-uid=0", "--owner-gid=0"]
    argv = {
        "tar": [*rules, f"--tree=tar={tgz}"],
        "cpio": [*rules, *owner, f"--tree=tar={cpio}"],
        "stdin": [*rules, "--tree=tar=-"],
        "filter-prefix": ["--tar-autocreate-parents", *owner, "--tar-pathname-filter=^,foo/",
                          f"--statoverride={tmp_path / 'so-prefix.txt'}", f"--tree=tar={tgz}"],
        "filter-rename": ["--tar-autocreate-parents", *owner, "--tar-pathname-filter=/bin/,/sbin/", f"--tree=tar={tgz}"],
        "autocreate-empty": ["--tar-autocreate-parents", "--owner-uid=42", "--owner-gid=43", f"--tree=tar={empty}"],
        "statoverride-dir": [*rules, "--mode-ro-executables", f"--tree=dir={src}"],
    }[case]

    def scenario(tool: str, w: Path) -> tuple[str, str]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        stdin = tgz.read_bytes() if case == "stdin" else None
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        import subprocess

        r = subprocess.run([tool, repo, "commit", "-b", "t", "--timestamp=@1000", *argv], input=stdin,
                           capture_output=True, env=env, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().strip(), run(tool, repo, "ls", "-R", "t").stdout

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def test_unmatched_statoverride_fails(tmp_path: Path, ostree: str) -> None:
    (tmp_path / "so.txt").write_text("2048 /no/such/file\n")
    src = make_tree(tmp_path / "src")

    def scenario(tool: str, w: Path) -> int:
        init(tool, w / "repo")
        return run(tool, f"--repo={w / 'repo'}", "commit", "-b", "t", f"--statoverride={tmp_path / 'so.txt'}",
                   f"--tree=dir={src}", check=False).returncode

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == 1


def test_diff_against_a_directory(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> list[list[str]]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo", "bare-user")
        tree = make_tree(w / "tree")
        run(tool, repo, "commit", "-b", "t", f"--tree=dir={tree}")
        (tree / "new").write_text("n\n")
        (tree / "a").unlink()
        (tree / "a").mkdir()
        (tree / "a" / "x").write_text("x\n")
        (tree / "d" / "b").write_text("changed\n")
        out = []
        for extra in ([], [f"--owner-uid={os.getuid() + 1}"]):
            r = run(tool, repo, "diff", "--no-xattrs", *extra, "t", str(tree) + "/", cwd=w)
            out.append(sorted(r.stdout.split("\n")))
        return out

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def _members(data: bytes) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out.append((m.name, m.type, m.mode, m.uid, m.gid, m.size, m.linkname, m.mtime, f.read() if f else b""))
    return out


@pytest.mark.parametrize("args", [[], ["--subpath=d"], ["--prefix=the-prefix/"], ["--subpath=d", "--prefix=p/"]])
def test_export(tmp_path: Path, ostree: str, args: list[str]) -> None:
    def scenario(tool: str, w: Path) -> list[tuple[object, ...]]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        run(tool, repo, "commit", "-b", "t", "--timestamp=@1000", "--owner-uid=7", f"--tree=dir={make_tree(w / 'tree')}")
        run(tool, repo, "export", "t", *args, "-o", str(w / "out.tar"))
        return sorted(_members((w / "out.tar").read_bytes()))

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


@pytest.mark.parametrize("mode", ["bare-user-only", "bare-user"])
def test_consume_adopts_files(tmp_path: Path, ostree: str, mode: str) -> None:
    def scenario(tool: str, w: Path) -> tuple[bool, bool]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo", mode)
        tree = make_tree(w / "tree")
        (tree / "eatme").write_text("a file to consume\n")
        os.link(tree / "eatme", w / "saved")
        run(tool, repo, "commit", "-b", "t", "--consume", f"--tree=dir={tree}")
        csum = run(tool, repo, "rev-parse", "t").stdout.strip()
        assert csum
        obj = next(p for p in (w / "repo" / "objects").glob("*/*.file") if p.read_bytes() == b"a file to consume\n")
        return os.path.samefile(obj, w / "saved"), tree.exists()

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


class _Recording(http.server.SimpleHTTPRequestHandler):
    """Serves files and notes each request's User-Agent and ``foo`` header."""

    seen: ClassVar[list[str]] = []

    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("User-Agent", "") + "|" + self.headers.get("foo", ""))
        super().do_GET()


def test_pull_http_header_and_append_user_agent(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> set[str]:
        src = w / "src"
        init(tool, src)
        run(tool, f"--repo={src}", "commit", "-b", "main", f"--tree=dir={make_tree(w / 'tree')}")
        run(tool, f"--repo={src}", "summary", "-u")
        init(tool, w / "dst")
        seen: list[str] = []
        handler = type("Recording", (_Recording,), {"seen": seen})
        with http_server(src, handler=handler) as port:
            dst = f"--repo={w / 'dst'}"
            run(tool, dst, "remote", "add", "--no-gpg-verify", "origin", f"http://127.0.0.1:{port}/")
            run(tool, dst, "pull", "--http-header", "foo=bar", "--append-user-agent", "dodo/2.15", "origin", "main")
        # The product before the appended one is each tool's own (bootree/V, libostree/V).
        return {s.split(" ", 1)[1] for s in seen}

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == {"dodo/2.15|bar"}


@pytest.mark.parametrize("ts", ["November 05 1955", "@-1", "1960-01-01"])
def test_commit_timestamp_before_1970(tmp_path: Path, ostree: str, ts: str) -> None:
    """test-prune.sh commits "November 05 1955": ostree stores the uint64 of a negative time."""
    def scenario(tool: str, w: Path) -> tuple[str, list[str]]:
        init(tool, w / "repo")
        csum = run(tool, f"--repo={w / 'repo'}", "commit", "-b", "t", f"--timestamp={ts}",
                   f"--tree=dir={make_tree(w / 'tree')}").stdout.strip()
        shown = run(tool, f"--repo={w / 'repo'}", "show", "t").stdout
        return csum, [line for line in shown.splitlines() if line.startswith("Date:")]

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]
