"""Pulling through static deltas over HTTP on 127.0.0.1, against the real ostree 2022.7.

* ``ostree pull`` of v2 over v1 from a bootree-made repository uses bootree's delta (superblock,
  parts, fallback objects) and fscks clean; so does bootree's own pull from the same server;
* bootree pulls v2 over v1 from an ostree-made repository through ostree's delta, and what goes
  over the wire is the delta (superblock, parts, fallbacks) plus a few small files: no object
  the parts carry is fetched again.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bootree.delta import DeltaOptions, generate_delta
from bootree.pull import add_remote, get_remote, pull
from bootree.pull.deltas import StaticDeltas
from bootree.pull.publish import update_summary
from bootree.pull.puller import PullConfig
from bootree.repo import Repo, RepoMode
from delta_builders import make_pair

pytestmark = [pytest.mark.compat, pytest.mark.skipif(shutil.which("ostree") is None, reason="needs ostree")]


def ostree(*args: str | Path) -> str:
    return subprocess.run(["ostree", *map(str, args)], check=True, capture_output=True, text=True).stdout


Log = list[tuple[str, int, int]]  # path, status, bytes sent


@pytest.fixture
def logging_server() -> Iterator[Callable[[Path], tuple[str, Log]]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(root: Path) -> tuple[str, Log]:
        log: Log = []

        class H(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: object, **kw: object) -> None:
                super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

            def log_request(self, code: object = "-", size: object = "-") -> None:
                path = self.path.split("?")[0].lstrip("/")
                full = root / path
                sent = full.stat().st_size if full.is_file() and str(code) == "200" else 0
                log.append((path, int(str(code)) if str(code).isdigit() else 0, sent))

            def log_message(self, *a: object) -> None:
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", log

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _objects_fetched(log: Log) -> set[str]:
    return {p for p, code, _ in log if p.startswith("objects/") and p.endswith(".filez") and code == 200}


def test_ostree_and_bootree_pull_bootree_deltas(tmp_path: Path, logging_server) -> None:  # type: ignore[no-untyped-def]
    pair = make_pair(tmp_path)
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=DeltaOptions(min_fallback_size=200_000))
    generate_delta(pair.repo, pair.v2)
    own = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=DeltaOptions(min_fallback_size=0, format="bootree"))
    fallbacks = {f"objects/{f.checksum[:2]}/{f.checksum[2:]}.filez" for f in res.superblock.fallbacks}
    assert len(fallbacks) == 1
    update_summary(pair.repo)
    url, log = logging_server(pair.repo.path)

    cli = tmp_path / "ocli"
    ostree(f"--repo={cli}", "init", "--mode=bare-user")
    ostree(f"--repo={cli}", "remote", "add", "--no-gpg-verify", "origin", url)
    ostree(f"--repo={cli}", "pull", "origin", f"os@{pair.v1}")
    log.clear()
    ostree(f"--repo={cli}", "pull", "origin", "os")
    paths = [p for p, _c, _s in log]
    assert f"{res.name.relpath}/superblock" in paths and f"{res.name.relpath}/0" in paths
    assert not any(p.startswith("bootree-deltas/") for p in paths)  # ostree ignores bootree's format
    # ostree 2022.7 fetches fallbacks one by one and re-fetches some loose objects too
    assert fallbacks <= _objects_fetched(log)
    assert ostree(f"--repo={cli}", "rev-parse", "origin:os").strip() == pair.v2
    assert "no errors found" in ostree(f"--repo={cli}", "fsck")

    repo = Repo.init(tmp_path / "bcli", mode=RepoMode.BARE_USER)
    add_remote(repo.config, "origin", url, gpg_verify=False)
    repo.save_config()
    remote = get_remote(repo.config, "origin")
    pull(repo, remote, [f"os@{pair.v1}"])
    log.clear()
    result = pull(repo, remote, ["os"])
    assert repo.refs.get("origin:os") == pair.v2
    # bootree prefers its own format: superblock and parts of bootree-deltas/, nothing else
    assert not _objects_fetched(log) and not any(p.startswith("deltas/") for p, _c, _s in log)
    delta_bytes = sum(s for p, _c, s in log if p.startswith("bootree-deltas/"))
    assert delta_bytes == own.superblock.total_size + len((own.path / "superblock").read_bytes())
    assert result.bytes_fetched <= delta_bytes + 16_384  # plus summary and config
    assert repo.fsck().ok and "no errors found" in ostree(f"--repo={repo.path}", "fsck")
    # and ostree's format, with its fallback fetched beside the parts, when only that is offered
    shutil.rmtree(pair.repo.path / "bootree-deltas")
    update_summary(pair.repo)
    again = Repo.init(tmp_path / "bcli2", mode=RepoMode.BARE_USER)
    add_remote(again.config, "origin", url, gpg_verify=False)
    again.save_config()
    pull(again, get_remote(again.config, "origin"), [f"os@{pair.v1}"])
    log.clear()
    result = pull(again, get_remote(again.config, "origin"), ["os"])
    assert _objects_fetched(log) == fallbacks
    delta_bytes = sum(s for p, _c, s in log if p.startswith("deltas/") or p in fallbacks)
    assert delta_bytes == res.superblock.total_size + len((pair.repo.path / res.name.superblock_relpath).read_bytes())
    assert result.bytes_fetched <= delta_bytes + 16_384  # plus summary, config, index
    assert again.fsck().ok

    # a scratch delta is used for a fresh pull; --disable-static-deltas pulls objects
    fresh = Repo.init(tmp_path / "fresh", mode=RepoMode.BARE_USER)
    add_remote(fresh.config, "origin", url, gpg_verify=False)
    fresh.save_config()
    log.clear()
    pull(fresh, get_remote(fresh.config, "origin"), ["os"])
    assert any(p.endswith("/superblock") and "-" not in p.split("/")[2] for p, _c, _s in log)
    assert not _objects_fetched(log) and fresh.fsck().ok
    plain = Repo.init(tmp_path / "plain", mode=RepoMode.BARE_USER)
    add_remote(plain.config, "origin", url, gpg_verify=False)
    plain.save_config()
    log.clear()
    pull(plain, get_remote(plain.config, "origin"), ["os"], config=PullConfig(static_deltas=StaticDeltas.DISABLE))
    assert not any(p.startswith("deltas/") for p, _c, _s in log) and _objects_fetched(log)


def test_bootree_pulls_ostree_deltas(tmp_path: Path, logging_server) -> None:  # type: ignore[no-untyped-def]
    pair = make_pair(tmp_path / "trees")
    src = tmp_path / "osrc"
    ostree(f"--repo={src}", "init", "--mode=archive")
    revs = []
    for n, rev in enumerate((pair.v1, pair.v2)):
        out = tmp_path / f"co{n}"
        pair.repo.checkout(rev, out, user_mode=True)
        if n:
            (out / "usr" / "share" / "new" / "blob").write_bytes(os.urandom(1_500_000))  # > 1 MB: a fallback
        revs.append(ostree(f"--repo={src}", "commit", "-b", "os", f"--tree=dir={out}", f"--timestamp=@{1700000000 + n}",
                           "--owner-uid=0", "--owner-gid=0").strip())
    v1, v2 = revs
    ostree(f"--repo={src}", "static-delta", "generate", "--min-fallback-size=1", f"--from={v1}", f"--to={v2}")
    ostree(f"--repo={src}", "summary", "-u")
    show = ostree(f"--repo={src}", "static-delta", "show", f"{v1}-{v2}")
    assert "Number of fallback entries: 1" in show
    total = int(next(line.split()[2] for line in show.splitlines() if line.startswith("Total Size:")))
    url, log = logging_server(src)
    repo = Repo.init(tmp_path / "client", mode=RepoMode.BARE_USER)
    add_remote(repo.config, "origin", url, gpg_verify=False)
    repo.save_config()
    remote = get_remote(repo.config, "origin")
    pull(repo, remote, [f"os@{v1}"])
    log.clear()
    result = pull(repo, remote, ["os"], config=PullConfig(static_deltas=StaticDeltas.REQUIRE))
    assert repo.refs.get("origin:os") == v2
    assert len(_objects_fetched(log)) == 1  # the fallback
    sb = next(s for p, _c, s in log if p.endswith("/superblock"))
    assert sum(s for p, _c, s in log if p.startswith("deltas/") or p in _objects_fetched(log)) == total + sb
    assert result.bytes_fetched <= total + sb + 16_384
    assert repo.fsck().ok and "no errors found" in ostree(f"--repo={repo.path}", "fsck")
