"""Issue 10 defect 8 / issue 9 item 7: a large object is streamed to its file, never held whole.

A 12 MB incompressible file is pulled over real HTTP (and with pull-local) into archive and
bare-user repositories while tracemalloc records the peak of Python allocations: it must stay
far below the object's size (the old puller held the whole object, and up to 256 MiB of others:
76 MB of allocations for a 24 MB object).
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree.format.checksum import Checksum
from bootree.pull import add_remote, get_remote, pull, pull_local
from bootree.pull.publish import update_summary
from bootree.repo import Repo, RepoMode
from bootree.transport.server import StaticServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIG = 12 * 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Repo, Checksum, bytes, str]]:
    root = tmp_path_factory.mktemp("bigsrc")
    tree = root / "tree"
    tree.mkdir()
    data = os.urandom(BIG)
    (tree / "huge").write_bytes(data)
    (tree / "small").write_bytes(b"small\n")
    repo = Repo.init(root / "repo", mode=RepoMode.ARCHIVE)
    commit = repo.commit([tree], branch="big", subject="big", timestamp=1700000000)
    update_summary(repo)
    with StaticServer(repo.path) as srv:
        yield repo, commit, data, srv.url


def _peak(fn: object) -> int:
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER])
@pytest.mark.parametrize("op", ["pull", "pull-local"])
def test_large_object_is_streamed(
    served: tuple[Repo, Checksum, bytes, str], tmp_path: Path, mode: RepoMode, op: str
) -> None:
    src, commit, data, url = served
    repo = Repo.init(tmp_path / "client", mode=mode)
    if op == "pull":
        add_remote(repo.config, "origin", url, gpg_verify=False)
        repo.save_config()
        peak = _peak(lambda: pull(repo, get_remote(repo.config, "origin"), ["big"]))
        assert repo.refs.get("origin:big") == commit
    else:
        peak = _peak(lambda: pull_local(repo, src.path, ["big"]))
        assert repo.refs.get("big") == commit
    # Chunks of 1 MiB in flight (read, inflate, compress) cost a few MiB whatever the size.
    assert peak < BIG // 2, f"peak of Python allocations {peak} bytes for a {BIG}-byte object"
    assert repo.fsck().ok
    out = tmp_path / "co"
    repo.checkout(commit, out, user_mode=True)
    assert (out / "huge").read_bytes() == data
