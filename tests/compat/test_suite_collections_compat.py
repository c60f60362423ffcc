"""The summary cache, binding checks, parent repositories and find-remotes, compared with the real ostree.

Behaviour the libostree test suite's GPG, summary and collections tests check (issue 15):
each scenario runs once with ``ostree`` and once with ``bootree``, in fresh directories, and
compares what a script sees (files in the cache, exit status, the lines scripts grep). The
summaries are signed with ostree's test-only dummy engine, so no GnuPG is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_cli_compat import http_server as serve

pytestmark = [
    pytest.mark.compat,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ostree") is None, reason="the ostree binary is not installed"),
]

TOOLS = {"ostree": ["ostree"], "bootree": [sys.executable, "-m", "bootree"]}


def run(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTREE_")}
    env.update(LC_ALL="C.UTF-8", OSTREE_DUMMY_SIGN_ENABLED="1")
    p = subprocess.run([*TOOLS[tool], *args], env=env, capture_output=True, text=True, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def each(tmp_path: Path, scenario: Callable[[str, Path], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in TOOLS:
        work = tmp_path / tool
        work.mkdir()
        out[tool] = scenario(tool, work)
    return out


def _server_repo(tool: str, w: Path, *extra: str) -> Path:
    src = w / "srv"
    run(tool, f"--repo={src}", "init", "--mode=archive", *extra)
    tree = w / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "a").write_text("a\n")
    run(tool, f"--repo={src}", "commit", "-b", "main", "--timestamp=@1700000000", f"--tree=dir={tree}")
    return src


def test_summary_cache_reuse_prune_and_cache_dir(tmp_path: Path) -> None:
    def scenario(tool: str, w: Path) -> dict[str, object]:
        src = _server_repo(tool, w)
        run(tool, f"--repo={src}", "summary", "-u", "--sign-type=dummy", "--sign=dummysign")
        repo = f"--repo={w / 'repo'}"
        cache = w / "repo/tmp/cache/summaries"
        run(tool, repo, "init", "--mode=archive")
        with serve(src) as port:
            run(tool, repo, "remote", "add", "--set=gpg-verify=false", "--set=sign-verify-summary=true",
                "--set=verification-dummy-key=dummysign", "origin", f"http://127.0.0.1:{port}/")
            run(tool, repo, "pull", "origin", "main")
            first = sorted(p.name for p in cache.iterdir())
            same = (cache / "origin").read_bytes() == (src / "summary").read_bytes()
            inode = (cache / "origin").stat().st_ino
            run(tool, repo, "pull", "origin", "main")
            kept = (cache / "origin").stat().st_ino == inode
            for name in ("foo", "foo.sig"):
                (cache / name).write_bytes(b"")
            run(tool, repo, "prune")
            pruned = sorted(p.name for p in cache.iterdir())
            (w / "cachedir").mkdir()  # ostree requires it to exist
            run(tool, repo, "pull", f"--cache-dir={w / 'cachedir'}", "origin", "main")
            other = sorted(p.name for p in (w / "cachedir/summaries").iterdir())
        return {"first": first, "same": same, "kept": kept, "pruned": pruned, "cache-dir": other}

    got = each(tmp_path, scenario)
    assert got["bootree"] == got["ostree"]
    assert got["ostree"] == {"first": ["origin", "origin.sig"], "same": True, "kept": True,
                             "pruned": ["origin", "origin.sig"], "cache-dir": ["origin", "origin.sig"]}


def test_collection_binding_is_checked_unless_disabled(tmp_path: Path) -> None:
    def scenario(tool: str, w: Path) -> tuple[int, int, int]:
        src = _server_repo(tool, w)
        tree = w / "tree"
        run(tool, f"--repo={src}", "commit", "-b", "other", "--timestamp=@1700000001", f"--tree=dir={tree}",
            "--add-metadata-string=ostree.collection-binding=org.example.Whatever")
        repo = f"--repo={w / 'repo'}"
        run(tool, repo, "init", "--mode=archive")
        run(tool, f"--repo={src}", "summary", "-u")
        with serve(src) as port:  # over HTTP the remote's configured collection ID applies
            run(tool, repo, "remote", "add", "--no-gpg-verify", "--collection-id=org.example.Os", "origin",
                f"http://127.0.0.1:{port}/")
            mismatch = run(tool, repo, "pull", "origin", "other", check=False).returncode
            unbound = run(tool, repo, "pull", "origin", "main", check=False).returncode
            disabled = run(tool, repo, "pull", "--disable-verify-bindings", "origin", "other", check=False).returncode
        return mismatch, unbound, disabled

    got = each(tmp_path, scenario)
    assert got["bootree"] == got["ostree"]
    assert got["ostree"] == (1, 1, 0)


def test_remote_of_the_parent_repository(tmp_path: Path) -> None:
    def scenario(tool: str, w: Path) -> tuple[int, str]:
        src = _server_repo(tool, w)
        run(tool, f"--repo={w / 'parent'}", "init", "--mode=archive")
        run(tool, f"--repo={w / 'parent'}", "remote", "add", "--no-gpg-verify", "up", f"file://{src}", "main")
        child = f"--repo={w / 'child'}"
        run(tool, child, "init", "--mode=bare-user")
        run(tool, child, "config", "set", "core.parent", str(w / "parent"))
        rc = run(tool, child, "pull", "up", check=False).returncode
        return rc, run(tool, child, "rev-parse", "up:main").stdout.strip() if rc == 0 else ""

    got = each(tmp_path, scenario)
    assert got["bootree"] == got["ostree"]
    assert got["ostree"][0] == 0


def test_find_remotes_report(tmp_path: Path) -> None:
    def scenario(tool: str, w: Path) -> list[str]:
        src = _server_repo(tool, w, "--collection-id=org.example.A")
        run(tool, f"--repo={src}", "summary", "-u")
        repo = f"--repo={w / 'repo'}"
        run(tool, repo, "init", "--mode=archive")
        run(tool, repo, "remote", "add", "--no-gpg-verify", "--collection-id=org.example.A", "r1", f"file://{src}")
        out = run(tool, repo, "find-remotes", "--finders=config", "org.example.A", "main", "org.example.A", "nope")
        none = run(tool, repo, "find-remotes", "--finders=config", "org.example.B", "x").stdout
        lines = [ln.replace(str(w), "W") for ln in out.stdout.splitlines() if "Summary last modified" not in ln]
        return [*sorted(lines), none]  # ostree lists a result's refs in hash-table order

    got = each(tmp_path, scenario)
    assert got["bootree"] == got["ostree"]
    assert "1/2 refs were found." in got["ostree"]


def test_summary_view_lists_static_deltas_as_ostree(tmp_path: Path) -> None:
    """``remote summary`` / ``summary --view``: the deltas are one GVariant-text metadata line
    (``test-pull-summary-sigs.sh`` greps it for the delta's commit)."""

    def scenario(tool: str, w: Path) -> str:
        src = _server_repo(tool, w, "--collection-id=org.example.A")
        run(tool, f"--repo={src}", "static-delta", "generate", "--empty", "main")
        run(tool, f"--repo={src}", "summary", "-u")
        return run(tool, f"--repo={src}", "summary", "--view").stdout

    got = each(tmp_path, scenario)
    # The commits are the same bytes; only the delta digests and times may differ between tools.
    shape = {t: [ln.split(":")[0] for ln in out.splitlines() if "(ostree." in ln] for t, out in got.items()}
    assert shape["bootree"] == shape["ostree"]
    assert any(ln.startswith("Static Deltas (ostree.static-deltas): {'") for ln in got["bootree"].splitlines())
