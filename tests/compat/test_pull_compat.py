"""Pull compatibility with the real ostree, both directions, over real HTTP on 127.0.0.1.

* ostree makes and publishes a repository, python's own http.server serves it, bootree pulls;
* bootree makes and publishes a repository, ``bootree serve``'s server serves it, ostree pulls;
* both tools fsck the results; the summary bootree writes is byte-identical to ostree's.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree.format.gvariant import Variant
from bootree.format.summary import Summary
from bootree.pull import add_remote, get_remote, pull
from bootree.pull.publish import update_summary
from bootree.repo import Repo, RepoMode
from bootree.transport.server import StaticServer

pytestmark = [pytest.mark.compat, pytest.mark.skipif(shutil.which("ostree") is None, reason="needs ostree")]


def ostree(*args: str | Path) -> str:
    return subprocess.run(["ostree", *map(str, args)], check=True, capture_output=True, text=True).stdout


def _tree(root: Path, n: int) -> Path:
    d = root / f"tree{n}"
    (d / "usr" / "lib").mkdir(parents=True)
    (d / "usr" / "lib" / "data.bin").write_bytes(os.urandom(50_000) + bytes(n))
    for i in range(20):
        (d / "usr" / "lib" / f"f{i}.txt").write_text(f"file {i} rev {n if i % 3 else 0}\n" * 40)
    (d / "empty").write_bytes(b"")
    os.symlink("usr/lib", d / "lib")
    os.chmod(d / "usr" / "lib" / "f1.txt", 0o755)
    return d


@pytest.fixture
def python_http_server() -> Iterator[callable]:  # type: ignore[valid-type]
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(root: Path) -> str:
        class H(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: object, **kw: object) -> None:
                super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

            def log_message(self, *a: object) -> None:
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER])
def test_bootree_pulls_from_ostree_repo(tmp_path: Path, python_http_server: callable, mode: RepoMode) -> None:  # type: ignore[valid-type]
    srv = tmp_path / "srv"
    ostree("init", f"--repo={srv}", "--mode=archive")
    c1 = ostree(
        "commit",
        f"--repo={srv}",
        "-b",
        "os/main",
        f"--tree=dir={_tree(tmp_path, 1)}",
        "--timestamp=@1700000000",
        "--add-metadata-string=version=1",
    ).strip()
    c2 = ostree(
        "commit",
        f"--repo={srv}",
        "-b",
        "os/main",
        f"--tree=dir={_tree(tmp_path, 2)}",
        "--timestamp=@1700000100",
        "--add-metadata-string=version=2",
    ).strip()
    ostree("summary", "-u", f"--repo={srv}")
    url = python_http_server(srv)

    repo = Repo.init(tmp_path / "client", mode=mode)
    add_remote(repo.config, "origin", url, gpg_verify=False)
    repo.save_config()
    pull(repo, get_remote(repo.config, "origin"), [f"os/main@{c1}"])
    r = pull(repo, get_remote(repo.config, "origin"), ["os/main"], depth=1)
    assert repo.refs.get("origin:os/main") == c2 and r.content_fetched > 0
    assert repo.fsck().ok
    out = ostree("fsck", f"--repo={repo.path}")
    assert "no errors found" in out
    assert ostree("rev-parse", f"--repo={repo.path}", "origin:os/main").strip() == c2
    # the checked-out trees agree with ostree's own checkout from the server
    ostree("checkout", f"--repo={srv}", "-U", c2, tmp_path / "o-co")
    ostree("checkout", f"--repo={repo.path}", "-U", c2, tmp_path / "b-co")
    assert (
        subprocess.run(["diff", "-r", "--no-dereference", tmp_path / "o-co", tmp_path / "b-co"]).returncode
        == 0
    )


@pytest.mark.parametrize("client_mode", ["archive", "bare-user"])
def test_ostree_pulls_from_bootree_served_repo(tmp_path: Path, client_mode: str) -> None:
    src = Repo.init(tmp_path / "srv", mode=RepoMode.ARCHIVE)
    src.commit(
        [_tree(tmp_path, 1)],
        branch="os/main",
        subject="v1",
        timestamp=1700000000,
        metadata=[("version", Variant("s", "1"))],
    )
    c2 = src.commit([_tree(tmp_path, 2)], branch="os/main", subject="v2", timestamp=1700000100)
    src.commit([_tree(tmp_path, 3)], branch="other", subject="o", timestamp=1700000200)
    update_summary(src)
    with StaticServer(src.path) as server:
        cli = tmp_path / "ocli"
        ostree("init", f"--repo={cli}", f"--mode={client_mode}")
        ostree("remote", "add", f"--repo={cli}", "--no-gpg-verify", "origin", server.url)
        assert ostree("remote", "refs", f"--repo={cli}", "origin").split() == [
            "origin:os/main",
            "origin:other",
        ]
        ostree("pull", f"--repo={cli}", "--depth=1", "origin", "os/main")
        assert ostree("rev-parse", f"--repo={cli}", "origin:os/main").strip() == c2
        assert "no errors found" in ostree("fsck", f"--repo={cli}")
        mirror = tmp_path / "mirror"
        ostree("init", f"--repo={mirror}", "--mode=archive")
        ostree("remote", "add", f"--repo={mirror}", "--no-gpg-verify", "origin", server.url)
        ostree("pull", f"--repo={mirror}", "--mirror", "origin")
        assert "no errors found" in ostree("fsck", f"--repo={mirror}")
    assert Repo.open(cli).fsck().ok


def test_summary_bytes_identical_to_ostree(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    ostree("init", f"--repo={srv}", "--mode=archive")
    ostree(
        "commit",
        f"--repo={srv}",
        "-b",
        "a/other",
        f"--tree=dir={_tree(tmp_path, 1)}",
        "--timestamp=@1700000000",
    )
    ostree(
        "commit",
        f"--repo={srv}",
        "-b",
        "test",
        f"--tree=dir={_tree(tmp_path, 2)}",
        "--timestamp=@1700000000",
        "--add-metadata-string=version=1.2",
    )
    ostree(
        "commit", f"--repo={srv}", "-b", "test", f"--tree=dir={_tree(tmp_path, 3)}", "--timestamp=@1700000100"
    )
    ostree("static-delta", "generate", f"--repo={srv}", "test")
    ostree("summary", "-u", f"--repo={srv}")
    theirs = Summary.from_bytes((srv / "summary").read_bytes())
    ours = update_summary(Repo.open(srv), now=theirs.last_modified)
    assert ours.to_bytes() == theirs.to_bytes() == (srv / "summary").read_bytes()
    # and ostree reads ours back
    assert "Latest Commit" in ostree("summary", "--view", f"--repo={srv}")
