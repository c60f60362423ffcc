"""End-to-end pulls over real HTTP on 127.0.0.1, including the bad-server cases of issue 4.

Each fault ends with one clear error or a successful retry; afterwards the local repository
keeps its old refs, fsck stays clean, and a rerun without the fault resumes (objects that
arrived are not fetched again).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "transport"))
from faulty import Faults, faulty_server

from bootree.cli import main
from bootree.errors import ChecksumMismatch, FetchError, NotFoundError, RefNotFound, RemoteError
from bootree.format.checksum import Checksum
from bootree.format.objects import ObjectType
from bootree.pull import PullConfig, PullEvent, add_remote, get_remote, pull, pull_local
from bootree.pull.plan import object_path
from bootree.pull.publish import update_summary
from bootree.repo import Repo, RepoMode, Transaction
from bootree.transport import FetchConfig
from bootree.transport.server import StaticServer

pytestmark = pytest.mark.integration

FAST = PullConfig(fetch=FetchConfig(read_timeout=0.5, max_attempts=3, backoff_base=0.01, backoff_max=0.05))


def _tree(root: Path, version: int) -> Path:
    d = root / f"tree{version}"
    (d / "usr" / "bin").mkdir(parents=True)
    (d / "etc").mkdir()
    for i in range(30):
        (d / "usr" / "bin" / f"tool{i}").write_bytes(
            f"tool {i} v{version if i < 5 else 1}\n".encode() * (i + 1)
        )
    (d / "etc" / "os-release").write_text(f"VERSION_ID={version}\n")
    (d / "usr" / "big").write_bytes(os.urandom(200_000) if version == 1 else b"big" * 70_000)
    os.symlink("usr/bin", d / "bin")
    return d


@dataclass
class Source:
    repo: Repo
    v1: Checksum
    v2: Checksum
    faults: Faults
    server: StaticServer

    @property
    def url(self) -> str:
        return self.server.url

    def fetched(self, suffix: str) -> int:
        return sum(1 for h in self.faults.hits if h.endswith(suffix))


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repo, Checksum, Checksum]:
    root = tmp_path_factory.mktemp("src")
    repo = Repo.init(root / "repo", mode=RepoMode.ARCHIVE)
    v1 = repo.commit([_tree(root, 1)], branch="os/main", subject="v1", timestamp=1700000000)
    v2 = repo.commit([_tree(root, 2)], branch="os/main", subject="v2", timestamp=1700000100)
    update_summary(repo)
    return repo, v1, v2


@pytest.fixture
def source(source_repo: tuple[Repo, Checksum, Checksum]) -> Iterator[Source]:
    repo, v1, v2 = source_repo
    faults = Faults()
    with faulty_server(repo.path, faults, stall_seconds=1.5) as srv:
        yield Source(repo, v1, v2, faults, srv)


def _client(tmp_path: Path, url: str, mode: RepoMode = RepoMode.ARCHIVE) -> Repo:
    repo = Repo.init(tmp_path / "client", mode=mode)
    add_remote(repo.config, "origin", url, gpg_verify=False)
    repo.save_config()
    return repo


def _pull(repo: Repo, *refs: str, **kw: object) -> object:
    return pull(repo, get_remote(repo.config, "origin"), list(refs), config=kw.pop("config", FAST), **kw)  # type: ignore[arg-type]


def _content_objects(src: Source, commit: Checksum) -> list[Checksum]:
    return sorted(c for t, c in src.repo.reachable_objects([commit]) if t is ObjectType.FILE)


@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER])
def test_pull_then_update(source: Source, tmp_path: Path, mode: RepoMode) -> None:
    repo = _client(tmp_path, source.url, mode)
    events: list[PullEvent] = []
    r1 = _pull(repo, f"os/main@{source.v1}", progress=events.append)
    assert repo.refs.get("origin:os/main") == source.v1
    assert events[-1].phase == "done" and events[-1].fetched > 30
    n1 = len(source.faults.hits)
    r2 = _pull(repo, "os/main")
    assert repo.refs.get("origin:os/main") == source.v2
    assert repo.fsck().ok and not repo.is_partial(source.v2)
    new = set(_content_objects(source, source.v2)) - set(_content_objects(source, source.v1))
    assert r2.content_fetched == len(new)  # type: ignore[attr-defined]
    assert len(source.faults.hits) - n1 < r1.requests  # type: ignore[attr-defined]
    # unchanged: nothing to fetch
    r3 = _pull(repo, "os/main")
    assert r3.content_fetched == 0 and r3.metadata_fetched <= 1  # type: ignore[attr-defined]


def _assert_clean_and_unchanged(repo: Repo, expected_ref: Checksum | None) -> None:
    assert repo.refs.get("origin:os/main") == expected_ref
    assert repo.fsck().ok


def test_wrong_bytes_never_enter(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    victim = _content_objects(source, source.v2)[3]
    source.faults.add(object_path(ObjectType.FILE, victim), "garble", count=-1)
    with pytest.raises((ChecksumMismatch, Exception)) as info:
        _pull(repo, "os/main")
    assert victim in str(info.value)
    _assert_clean_and_unchanged(repo, None)
    assert not repo.has_object(ObjectType.FILE, victim)
    assert repo.is_partial(source.v2)
    # rerun without the fault: resumes, refetching only what is missing
    source.faults.rules.clear()
    before = len(source.faults.hits)
    r = _pull(repo, "os/main")
    assert repo.refs.get("origin:os/main") == source.v2 and repo.fsck().ok
    assert not repo.is_partial(source.v2)
    assert r.content_fetched < len(_content_objects(source, source.v2))  # type: ignore[attr-defined]
    assert len(source.faults.hits) - before < 10


def test_wrong_metadata_bytes(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    root_tree = source.repo.read_commit(source.v2).root_tree
    source.faults.add(object_path(ObjectType.DIR_TREE, root_tree), "garble", count=-1)
    with pytest.raises(ChecksumMismatch):
        _pull(repo, "os/main")
    _assert_clean_and_unchanged(repo, None)


def test_truncated_response_is_retried(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    big = [c for c in _content_objects(source, source.v1)]
    for c in big:
        source.faults.add(object_path(ObjectType.FILE, c), "truncate", count=1)
    _pull(repo, f"os/main@{source.v1}")
    _assert_clean_and_unchanged(repo, source.v1)


def test_404_for_needed_object_then_resume(
    source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _client(tmp_path, source.url)
    victim = _content_objects(source, source.v2)[0]
    source.faults.add(object_path(ObjectType.FILE, victim), "404", count=-1)
    rc = main(["pull", f"--repo={repo.path}", "origin", "os/main"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[0].startswith("error: fetching ") and "not found" in err[0] and len(err) == 1
    repo = Repo.open(repo.path)
    _assert_clean_and_unchanged(repo, None)
    source.faults.rules.clear()
    first = before = len(source.faults.hits)
    assert main(["pull", f"--repo={repo.path}", "origin", "os/main"]) == 0
    out = capsys.readouterr().out
    assert "content objects fetched" in out
    assert source.fetched(object_path(ObjectType.FILE, victim)) == 2
    assert len(source.faults.hits) - before < first / 2  # only what had not arrived
    _assert_clean_and_unchanged(Repo.open(repo.path), source.v2)


def test_500_then_success(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    source.faults.add("/summary", "500", count=2)
    source.faults.add(object_path(ObjectType.COMMIT, source.v2), "500", count=1)
    _pull(repo, "os/main")
    _assert_clean_and_unchanged(repo, source.v2)


def test_stalling_server_times_out_then_resumes(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    victim = _content_objects(source, source.v2)[5]
    source.faults.add(object_path(ObjectType.FILE, victim), "stall", count=-1)
    with pytest.raises(FetchError, match="stalled"):
        _pull(repo, "os/main")
    _assert_clean_and_unchanged(repo, None)
    source.faults.rules.clear()
    _pull(repo, "os/main")
    _assert_clean_and_unchanged(repo, source.v2)


def test_oversized_summary(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    import dataclasses

    cfg = dataclasses.replace(FAST, max_summary_size=64)
    with pytest.raises(FetchError, match="too large"):
        _pull(repo, "os/main", config=cfg)
    _assert_clean_and_unchanged(repo, None)


def test_ref_pointing_to_missing_commit(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    source.faults.add(object_path(ObjectType.COMMIT, source.v2), "404", count=-1)
    with pytest.raises(NotFoundError, match=r"\.commit"):
        _pull(repo, "os/main")
    _assert_clean_and_unchanged(repo, None)
    with pytest.raises(RefNotFound):
        _pull(repo, "os/nonexistent")


def test_depth_metadata_only_dry_run(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    r = _pull(repo, "os/main", dry_run=True)
    assert r.dry_run and r.content_fetched > 0  # type: ignore[attr-defined]
    assert repo.refs.get("origin:os/main") is None and not repo.has_object(ObjectType.COMMIT, source.v2)
    _pull(repo, "os/main", commit_metadata_only=True, depth=1)
    assert repo.has_object(ObjectType.COMMIT, source.v1) and repo.has_object(ObjectType.COMMIT, source.v2)
    assert repo.is_partial(source.v2)
    assert not repo.has_object(ObjectType.DIR_TREE, source.repo.read_commit(source.v2).root_tree)
    _pull(repo, "os/main", depth=-1)
    assert not repo.is_partial(source.v2) and not repo.is_partial(source.v1)
    assert repo.reachable_objects([source.v1]) <= set(repo.store.iter_objects()) | {
        (ObjectType.COMMIT_META, source.v1)
    }
    assert repo.fsck().ok


def test_mirror(source: Source, tmp_path: Path) -> None:
    repo = _client(tmp_path, source.url)
    _pull(repo, mirror=True)
    assert repo.refs.get("os/main") == source.v2
    assert (repo.path / "summary").read_bytes() == (source.repo.path / "summary").read_bytes()
    assert repo.fsck().ok


def test_file_remote_and_pull_local(source: Source, tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "f", mode=RepoMode.BARE_USER)
    add_remote(repo.config, "origin", source.repo.path.as_uri(), gpg_verify=False)
    pull(repo, get_remote(repo.config, "origin"), ["os/main"])
    assert repo.refs.get("origin:os/main") == source.v2 and repo.fsck().ok
    # pull-local from an archive and then from a bare-user repository
    bu = Repo.init(tmp_path / "bu", mode=RepoMode.BARE_USER)
    pull_local(bu, source.repo.path, ["os/main"])
    assert bu.refs.get("os/main") == source.v2 and bu.fsck().ok
    ar = Repo.init(tmp_path / "ar", mode=RepoMode.ARCHIVE)
    res = pull_local(ar, bu.path, ["os/main"], remote="up")
    assert ar.refs.get("up:os/main") == source.v2 and ar.fsck().ok and res.content_fetched > 0


def test_fleet_of_clients(source: Source, tmp_path: Path) -> None:
    """Several clients pulling at once from one server end up identical and fsck-clean."""
    repos = [_client(tmp_path / f"c{i}", source.url) for i in range(8)]
    errors: list[BaseException] = []

    def run(r: Repo) -> None:
        try:
            _pull(r, "os/main", config=PullConfig())
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=run, args=(r,)) for r in repos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    listing = {tuple(sorted(r.store.iter_objects())) for r in repos}
    assert len(listing) == 1 and all(r.fsck().ok and r.refs.get("origin:os/main") == source.v2 for r in repos)


def test_non_archive_remote_refused(tmp_path: Path) -> None:
    bare = Repo.init(tmp_path / "bare", mode=RepoMode.BARE_USER)
    with StaticServer(bare.path) as srv:
        repo = _client(tmp_path, srv.url)
        with pytest.raises(RemoteError, match="only archive"):
            _pull(repo, "x")


def test_gpg_verify_remote_fails_closed(source: Source, tmp_path: Path) -> None:
    from bootree.errors import VerificationError

    repo = Repo.init(tmp_path / "g", mode=RepoMode.ARCHIVE)
    add_remote(repo.config, "origin", source.url)  # ostree's default: gpg-verify=true
    with pytest.raises(VerificationError, match="GPG"):
        pull(repo, get_remote(repo.config, "origin"), ["os/main"])
    assert source.faults.hits == [] and repo.refs.get("origin:os/main") is None


@pytest.mark.parametrize("mode", [RepoMode.ARCHIVE, RepoMode.BARE_USER])
def test_early_publishing(source: Source, tmp_path: Path, mode: RepoMode, monkeypatch: pytest.MonkeyPatch) -> None:
    # Written content objects are flushed and renamed in while the pull goes on. Made eager here
    # (every object, every millisecond) so that these small pulls exercise it: a complete pull,
    # a failed one (refs kept, fsck clean, what arrived kept) and its resumption.
    from bootree.pull import writer

    monkeypatch.setattr(writer, "EARLY_BATCH", 1)
    monkeypatch.setattr(writer, "EARLY_INTERVAL", 0.001)
    published: list[int] = []
    real = Transaction.publish_early

    def spy(self: Transaction, otype: ObjectType, checksums: list[Checksum]) -> None:
        published.append(len(checksums))
        real(self, otype, checksums)

    monkeypatch.setattr(Transaction, "publish_early", spy)
    repo = _client(tmp_path, source.url, mode)
    _pull(repo, f"os/main@{source.v1}")
    assert published, "nothing was published early"
    _assert_clean_and_unchanged(repo, source.v1)
    victim = sorted(set(_content_objects(source, source.v2)) - set(_content_objects(source, source.v1)))[0]
    source.faults.add(object_path(ObjectType.FILE, victim), "404", count=-1)
    with pytest.raises(NotFoundError):
        _pull(repo, "os/main")
    _assert_clean_and_unchanged(repo, source.v1)
    source.faults.rules.clear()
    _pull(repo, "os/main")
    _assert_clean_and_unchanged(repo, source.v2)


def test_early_publishing_error_fails_the_pull(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bootree.pull import writer

    monkeypatch.setattr(writer, "EARLY_BATCH", 1)
    monkeypatch.setattr(writer, "EARLY_INTERVAL", 0.001)

    def broken(self: Transaction, otype: ObjectType, checksums: list[Checksum]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Transaction, "publish_early", broken)
    repo = _client(tmp_path, source.url)
    with pytest.raises(OSError, match="No space left"):
        _pull(repo, f"os/main@{source.v1}")
    _assert_clean_and_unchanged(repo, None)
    # Through the CLI, into a fresh repository: one line, no trace.
    other = _client(tmp_path / "cli", source.url)
    capsys.readouterr()
    assert main(["pull", f"--repo={other.path}", "origin", f"os/main@{source.v1}"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["error: No space left on device"]
    _assert_clean_and_unchanged(Repo.open(other.path), None)


def test_trickling_server_fails_with_one_line(source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 10 defect 4: one byte at a time must not hold a pull; the minimum rate is per remote.
    import time

    repo = _client(tmp_path, source.url)
    repo.config.set('remote "origin"', "low-speed-limit-bytes", "1000")
    repo.config.set('remote "origin"', "low-speed-time-seconds", "0.5")
    repo.save_config()
    victim = _content_objects(source, source.v1)[-1]
    source.faults.add(object_path(ObjectType.FILE, victim), "trickle", count=-1)
    capsys.readouterr()
    t0 = time.monotonic()
    assert main(["pull", f"--repo={repo.path}", "--network-retries=1", "origin", f"os/main@{source.v1}"]) == 1
    took = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "transfer too slow" in err[0], err
    assert took < 15, took
    assert source.fetched(object_path(ObjectType.FILE, victim)) == 2  # first attempt and one retry
    _assert_clean_and_unchanged(Repo.open(repo.path), None)
