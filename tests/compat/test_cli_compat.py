"""Behaviour the libostree test suite found different (issue 15), each compared with the real ostree.

Every test runs one scenario twice, in fresh directories, once with ``ostree`` and once with
``bootree`` as the command, and compares what a script would see (checksums, output lines,
exit status). The scenarios are the bugs the suite run exposed, reduced to their core.
"""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.compat

BOOTREE = str(Path(sys.executable).with_name("bootree"))


def tools(ostree: str) -> list[tuple[str, str]]:
    return [("ostree", ostree), ("bootree", BOOTREE)]


def run(tool: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LC_ALL": "C.UTF-8", **(env or {})}
    for var in ("OSTREE_REPO", "OSTREE_SYSROOT"):
        if env is None or var not in env:
            full_env.pop(var, None)
    r = subprocess.run([tool, *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def each(tmp_path: Path, ostree: str, scenario: Callable[[str, Path], object]) -> dict[str, object]:
    """``scenario(tool, workdir)`` with each tool, in its own directory: ``{tool name: result}``."""
    out = {}
    for name, tool in tools(ostree):
        work = tmp_path / name
        work.mkdir()
        out[name] = scenario(tool, work)
    return out


def make_tree(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    (root / "a").write_text("a\n")
    (root / "d" / "b").write_text("b\n")
    os.symlink("a", root / "l")
    return root


def init(tool: str, repo: Path, mode: str = "archive") -> None:
    run(tool, f"--repo={repo}", "init", f"--mode={mode}")


def test_commit_without_path_commits_the_current_directory(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> str:
        init(tool, w / "repo")
        tree = make_tree(w / "tree")
        return run(tool, f"--repo={w / 'repo'}", "commit", "-b", "main", "--timestamp=@1000000000", cwd=tree).stdout.strip()

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def test_owner_options_apply_to_a_ref_tree(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> tuple[str, str]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        run(tool, repo, "commit", "-b", "base", "--timestamp=@1", f"--tree=dir={make_tree(w / 'tree')}")
        csum = run(tool, repo, "commit", "-b", "new", "--timestamp=@1", "--tree=ref=base",
                   "--owner-uid=42", "--owner-gid=42").stdout.strip()
        return csum, run(tool, repo, "ls", "new", "/d/b").stdout

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]
    assert " 42 42 " in got["ostree"][1]  # type: ignore[index]


def test_summary_and_commit_add_metadata_parse_typed_gvariant_text(tmp_path: Path, ostree: str) -> None:
    meta = ["--add-metadata=map=@a{sv} {}", "--add-metadata=n=@u 5", "--add-metadata=s='text'",
            "--add-metadata=t=uint64 7", "--add-metadata=b=true"]

    def scenario(tool: str, w: Path) -> tuple[str, list[str]]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        csum = run(tool, repo, "commit", "-b", "x", "--timestamp=@1", *meta, f"--tree=dir={make_tree(w / 'tree')}")
        run(tool, repo, "summary", "-u", *meta)
        view = run(tool, repo, "summary", "--view").stdout.splitlines()
        return csum.stdout.strip(), sorted(line for line in view if line.split(":")[0] in ("map", "n", "s", "t", "b"))

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]
    assert "map: {}" in got["ostree"][1]  # type: ignore[index]  # an empty a{sv} as ostree shows it


@pytest.mark.parametrize("how", ["pull-local", "pull"])
def test_deeper_pull_after_depth_zero_fetches_parents(tmp_path: Path, ostree: str, how: str) -> None:
    def scenario(tool: str, w: Path) -> list[int]:
        src = w / "src"
        init(tool, src)
        tree = make_tree(w / "tree")
        for i in range(3):
            (tree / "a").write_text(str(i))
            run(tool, f"--repo={src}", "commit", "-b", "main", f"--timestamp=@{i + 1}", f"--tree=dir={tree}")
        dst = f"--repo={w / 'dst'}"
        init(tool, w / "dst")
        if how == "pull":
            run(tool, dst, "remote", "add", "--no-gpg-verify", "origin", f"file://{src}")
        counts = []
        for depth in ("0", "1"):
            if how == "pull":
                run(tool, dst, "pull", f"--depth={depth}", "origin", "main")
                ref = "origin:main"
            else:
                run(tool, dst, "pull-local", f"--depth={depth}", str(src), "main")
                ref = "main"
            log = run(tool, dst, "log", ref).stdout
            counts.append(log.count("\ncommit ") + log.startswith("commit "))
        return counts

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == [1, 2]


def test_contenturl_serves_every_object_but_commitmeta(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> str:
        src = w / "src"
        init(tool, src)
        csum = run(tool, f"--repo={src}", "commit", "-b", "main", f"--tree=dir={make_tree(w / 'tree')}").stdout.strip()
        run(tool, f"--repo={src}", "summary", "-u")
        meta = w / "meta"  # url: everything but objects
        shutil.copytree(src, meta, ignore=shutil.ignore_patterns("objects"))
        (meta / "objects").mkdir()
        dst = f"--repo={w / 'dst'}"
        init(tool, w / "dst")
        with http_server(meta) as url_port, http_server(src) as content_port:
            run(tool, dst, "remote", "add", "--no-gpg-verify", f"--contenturl=http://127.0.0.1:{content_port}/",
                "origin", f"http://127.0.0.1:{url_port}/")
            run(tool, dst, "pull", "origin", "main")
        return "ok" if run(tool, dst, "rev-parse", "origin:main").stdout.strip() == csum else "mismatch"

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == "ok"


def test_rev_parse_falls_back_to_remote_refs(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> tuple[str, int]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        csum = run(tool, repo, "commit", "--orphan", f"--tree=dir={make_tree(w / 'tree')}").stdout.strip()
        (w / "repo/refs/remotes/origin/os").mkdir(parents=True)
        (w / "repo/refs/remotes/origin/os/main").write_text(csum + "\n")
        found = run(tool, repo, "rev-parse", "os/main").stdout.strip()
        missing = run(tool, repo, "rev-parse", "nosuch", check=False).returncode
        return ("same" if found == csum else found), missing

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == ("same", 1)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; with ``auth`` only to ``user:pw`` (HTTP Basic), as ostree's test server can."""

    auth = False

    def do_GET(self) -> None:
        token = base64.b64encode(b"user:pw").decode()
        if self.auth and self.headers.get("Authorization") != f"Basic {token}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _AuthHandler(_Handler):
    auth = True


@contextmanager
def http_server(root: Path, *, auth: bool = False,
                handler: type[http.server.SimpleHTTPRequestHandler] | None = None) -> Iterator[int]:
    """A server on 127.0.0.1 (a free port) for ``root``, stopped on exit; yields the port."""
    cls = handler or (_AuthHandler if auth else _Handler)
    handler = lambda *a, **kw: cls(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_credentials_in_the_remote_url_are_sent(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> tuple[int, int]:
        src = w / "src"
        init(tool, src)
        run(tool, f"--repo={src}", "commit", "-b", "main", f"--tree=dir={make_tree(w / 'tree')}")
        run(tool, f"--repo={src}", "summary", "-u")
        dst = f"--repo={w / 'dst'}"
        init(tool, w / "dst")
        with http_server(src, auth=True) as port:
            run(tool, dst, "remote", "add", "--no-gpg-verify", "anon", f"http://127.0.0.1:{port}/")
            run(tool, dst, "remote", "add", "--no-gpg-verify", "origin", f"http://user:pw@127.0.0.1:{port}/")
            anon = run(tool, dst, "pull", "anon", "main", check=False).returncode
            authed = run(tool, dst, "pull", "origin", "main", check=False).returncode
        return anon, authed

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == (1, 0)


def test_default_repository_from_the_environment_and_cwd(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> list[str]:
        sysroot = w / "sysroot"
        (sysroot / "ostree").mkdir(parents=True)
        init(tool, sysroot / "ostree/repo", "bare-user-only")
        run(tool, f"--repo={sysroot / 'ostree/repo'}", "commit", "-b", "in-sysroot", "--canonical-permissions",
            f"--tree=dir={make_tree(w / 'tree')}")
        init(tool, w / "here")
        run(tool, f"--repo={w / 'here'}", "commit", "-b", "in-cwd", f"--tree=dir={w / 'tree'}")
        return [
            run(tool, "refs", env={"OSTREE_SYSROOT": str(sysroot)}, cwd=w).stdout,
            run(tool, "refs", cwd=w / "here", env={"OSTREE_SYSROOT": str(sysroot)}).stdout,
        ]

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == ["in-sysroot\n", "in-cwd\n"]


def test_refs_prefix_output(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> list[list[str]]:
        repo = f"--repo={w / 'repo'}"
        init(tool, w / "repo")
        tree = make_tree(w / "tree")
        for ref in ("foo/test-1", "foo/bar/x", "other", "origin:foo/rem"):
            run(tool, repo, "commit", "-b", ref, f"--tree=dir={tree}")
        return [sorted(run(tool, repo, "refs", *args).stdout.split())
                for args in (["foo"], ["foo/test-1"], ["origin:"], ["origin:foo"], ["--list", "foo"])]

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]
    assert got["ostree"][0] == ["bar/x", "test-1"]  # type: ignore[index]


def test_admin_kargs_edit_in_place_takes_a_refspec(tmp_path: Path, ostree: str) -> None:
    """The REFSPEC is accepted (not a usage error); without deployments both then fail alike."""

    def scenario(tool: str, w: Path) -> tuple[int, str]:
        (w / "sysroot").mkdir()
        run(tool, "admin", "init-fs", str(w / "sysroot"))
        r = run(tool, "admin", f"--sysroot={w / 'sysroot'}", "kargs", "edit-in-place",
                "--append-if-missing=quiet", "testos:testos/main", check=False)
        return r.returncode, r.stderr.strip()

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == (1, "error: Unable to find a deployment in sysroot")
