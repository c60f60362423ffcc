"""Pulls against the in-memory remote simulator: every fault case in milliseconds.

The real-server tests (tests/integration/test_pull_http.py) stay; these cover the pull's logic
(verify, failure policy, resume, streaming, the signature hook) without sockets or sleeps.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

import pytest
from simulator import FAST, RemoteSimulator

from bootree.errors import (
    BindingError,
    ChecksumMismatch,
    CorruptObject,
    FetchError,
    NotFoundError,
    RemoteError,
    VerificationError,
)
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.gvariant import Variant
from bootree.format.summary import Summary, SummaryRef
from bootree.format.verified import VerifiedMetadata
from bootree.pull import PullConfig, add_remote, get_remote, pull
from bootree.pull.options import PullOptions
from bootree.pull.plan import PullTarget, resolve_targets
from bootree.pull.puller import PullJob, run_pull
from bootree.pull.session import RemoteSession
from bootree.pull.sources import HttpSource
from bootree.pull.verify import NoSignatures, Verifier
from bootree.repo import Repo, RepoMode
from bootree.transport.memory import FaultKind

CFG = PullConfig(fetch=FAST)
SPEC = {
    "usr": {"bin": {f"tool{i}": f"tool {i}\n".encode() * (i + 1) for i in range(12)}, "big": bytes(range(256)) * 300},
    "etc": {"os-release": b"VERSION_ID=1\n"},
    "bin": "usr/bin",
}


@pytest.fixture
def sim() -> RemoteSimulator:
    s = RemoteSimulator()
    s.commit("os/main", SPEC, subject="v1")
    return s


def _repo(tmp_path: Path, mode: RepoMode = RepoMode.BARE_USER, name: str = "client") -> Repo:
    repo = Repo.init(tmp_path / name, mode=mode)
    add_remote(repo.config, "origin", "mem://remote", gpg_verify=False)
    repo.save_config()
    return repo


def _pull(repo: Repo, sim: RemoteSimulator, *refs: str, config: PullConfig = CFG) -> object:
    return pull(repo, get_remote(repo.config, "origin"), list(refs), config=config, fetcher=sim.fetcher)


def _assert_has_all(repo: Repo, sim: RemoteSimulator, commit: Checksum) -> None:
    assert repo.fsck().ok
    for csum, (header, content) in sim.contents.items():
        if (ObjectType.FILE, csum) in repo.reachable_objects([commit]):
            got_header, got = repo.load_file(csum)
            assert got_header.mode == header.mode and got == content


def _no_ref(repo: Repo) -> None:
    assert repo.refs.get("origin:os/main") is None
    assert repo.fsck().ok


@pytest.mark.parametrize("mode", [RepoMode.BARE_USER, RepoMode.ARCHIVE])
def test_pull_and_update(sim: RemoteSimulator, tmp_path: Path, mode: RepoMode) -> None:
    repo = _repo(tmp_path, mode)
    _pull(repo, sim, "os/main")
    v1 = sim.refs["os/main"]
    assert repo.refs.get("origin:os/main") == v1
    _assert_has_all(repo, sim, v1)
    v2 = sim.commit("os/main", {**SPEC, "etc": {"os-release": b"VERSION_ID=2\n"}}, subject="v2")
    before = len(sim.fetcher.hits)
    _pull(repo, sim, "os/main")
    assert repo.refs.get("origin:os/main") == v2
    fetched = [h for h in sim.fetcher.hits[before:] if h.endswith(".filez")]
    assert len(fetched) == 1  # only the changed file
    _assert_has_all(repo, sim, v2)


def test_truncation_is_retried(sim: RemoteSimulator, tmp_path: Path) -> None:
    big = max(sim.contents, key=lambda c: len(sim.contents[c][1]))
    sim.fetcher.add_fault(sim.object_url_suffix(ObjectType.FILE, big), FaultKind.TRUNCATE, 2)
    repo = _repo(tmp_path)
    _pull(repo, sim, "os/main")
    _assert_has_all(repo, sim, sim.refs["os/main"])
    assert sim.fetcher.stats.retries == 2


def test_truncated_forever_fails_then_resumes(sim: RemoteSimulator, tmp_path: Path) -> None:
    victim = sorted(sim.contents)[0]
    sim.fetcher.add_fault(sim.object_url_suffix(ObjectType.FILE, victim), FaultKind.TRUNCATE, -1)
    repo = _repo(tmp_path)
    with pytest.raises(FetchError, match="Download incomplete") as info:
        _pull(repo, sim, "os/main")
    assert info.value.transient
    _no_ref(repo)
    sim.fetcher.clear_faults()
    before = len(sim.fetcher.hits)
    _pull(repo, sim, "os/main")
    refetched = [h for h in sim.fetcher.hits[before:] if h.endswith(".filez")]
    assert refetched == [sim.url(sim.object_url_suffix(ObjectType.FILE, victim))]  # the rest was kept
    _assert_has_all(repo, sim, sim.refs["os/main"])


@pytest.mark.parametrize("otype", [ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.COMMIT])
def test_wrong_bytes_never_enter(sim: RemoteSimulator, tmp_path: Path, otype: ObjectType) -> None:
    if otype is ObjectType.FILE:
        victim = max(sim.contents, key=lambda c: len(sim.contents[c][1]))
    elif otype is ObjectType.COMMIT:
        victim = sim.refs["os/main"]
    else:
        victim = _root_tree(sim)
    sim.fetcher.add_fault(sim.object_url_suffix(otype, victim), FaultKind.GARBLE, -1)
    repo = _repo(tmp_path)
    with pytest.raises((ChecksumMismatch, CorruptObject)):
        _pull(repo, sim, "os/main")
    assert not repo.has_object(otype, victim)
    _no_ref(repo)


def _root_tree(sim: RemoteSimulator) -> Checksum:
    from bootree.format.objects import Commit
    from bootree.pull.plan import object_path

    data = sim.fetcher.files[sim.url(object_path(ObjectType.COMMIT, sim.refs["os/main"]))]
    return Commit.from_bytes(data).root_tree


def test_reordered_completions(tmp_path: Path) -> None:
    for seed in range(3):
        sim = RemoteSimulator(shuffle=random.Random(seed))
        sim.commit("os/main", SPEC)
        repo = _repo(tmp_path, name=f"c{seed}")
        _pull(repo, sim, "os/main")
        _assert_has_all(repo, sim, sim.refs["os/main"])


def test_404_mid_pull_keeps_what_arrived(sim: RemoteSimulator, tmp_path: Path) -> None:
    victim = sorted(sim.contents)[-1]
    sim.fetcher.add_fault(sim.object_url_suffix(ObjectType.FILE, victim), FaultKind.STATUS, -1, status=404)
    repo = _repo(tmp_path)
    with pytest.raises(NotFoundError, match=r"\.filez"):
        _pull(repo, sim, "os/main")
    _no_ref(repo)
    kept = sum(1 for c in sim.contents if repo.has_object(ObjectType.FILE, c))
    assert kept == len(sim.contents) - 1


def test_stall_then_success(sim: RemoteSimulator, tmp_path: Path) -> None:
    sim.fetcher.add_fault("/summary", FaultKind.STALL, 1)
    sim.fetcher.add_fault(".dirtree", FaultKind.RESET, 1)
    repo = _repo(tmp_path)
    _pull(repo, sim, "os/main")
    _assert_has_all(repo, sim, sim.refs["os/main"])


def test_corrupt_summary_is_a_remote_error(sim: RemoteSimulator, tmp_path: Path) -> None:
    sim.fetcher.files[sim.url("summary")] = b"\x00garbage"
    with pytest.raises(RemoteError, match="summary is corrupt"):
        _pull(_repo(tmp_path), sim, "os/main")


def test_ref_binding(tmp_path: Path) -> None:
    sim = RemoteSimulator()
    tree_spec = {"a": b"a"}
    tree, meta = sim._tree(tree_spec)
    from bootree.format.objects import Commit

    bound = Commit(tree, meta, metadata=(("ostree.ref-binding", Variant("as", ["os/other"])),))
    csum = sim._object(ObjectType.COMMIT, bound.to_bytes())
    sim.refs["os/main"] = csum
    sim.publish()
    repo = _repo(tmp_path)
    with pytest.raises(BindingError, match="no requested ref ‘os/main’"):  # ostree's wording
        _pull(repo, sim, "os/main")
    _no_ref(repo)
    # ``pull --disable-verify-bindings``: the operator takes the commit as it is.
    pull(repo, get_remote(repo.config, "origin"), ["os/main"], config=CFG, fetcher=sim.fetcher,
         verify_bindings=False)
    assert repo.refs.get("origin:os/main") == csum


def _bound_commit(sim: RemoteSimulator, ref: str, collection: str | None) -> Checksum:
    from bootree.format.objects import Commit

    tree, meta = sim._tree({"a": b"a"})
    metadata = [("ostree.ref-binding", Variant("as", [ref]))]
    if collection is not None:
        metadata.append(("ostree.collection-binding", Variant("s", collection)))
    csum = sim._object(ObjectType.COMMIT, Commit(tree, meta, metadata=tuple(metadata)).to_bytes())
    sim.refs[ref] = csum
    sim.publish()
    return csum


@pytest.mark.parametrize(
    ("bound_to", "error"),
    [
        (None, "Expected commit metadata to have collection ID binding information, found none"),
        ("org.example.Other", "Commit has collection ID ‘org.example.Other’ in collection binding metadata"),
    ],
)
def test_collection_binding_from_a_remote_with_a_collection_id(
    tmp_path: Path, bound_to: str | None, error: str
) -> None:
    sim = RemoteSimulator()
    _bound_commit(sim, "os/main", bound_to)
    repo = _repo(tmp_path)
    repo.config.set('remote "origin"', "collection-id", "org.example.Os")
    repo.save_config()
    with pytest.raises(BindingError, match=error):
        _pull(repo, sim, "os/main")
    _no_ref(repo)


def test_collection_binding_that_matches_is_pulled(tmp_path: Path) -> None:
    sim = RemoteSimulator()
    csum = _bound_commit(sim, "os/main", "org.example.Os")
    repo = _repo(tmp_path)
    repo.config.set('remote "origin"', "collection-id", "org.example.Os")
    repo.save_config()
    _pull(repo, sim, "os/main")
    assert repo.refs.get("origin:os/main") == csum
    # A ref moving to a commit already here is checked too (ostree checks every pulled ref).
    sim.refs["os/other"] = csum
    sim.publish()
    with pytest.raises(BindingError, match="no requested ref ‘os/other’"):
        _pull(repo, sim, "os/other")


@pytest.mark.parametrize("mode", [RepoMode.BARE_USER, RepoMode.ARCHIVE])
def test_large_objects_stream_to_their_file(sim: RemoteSimulator, tmp_path: Path, mode: RepoMode) -> None:
    cfg = dataclasses.replace(CFG, stream_threshold=1024)  # "big" (76,800 bytes) is streamed
    big = max(sim.contents, key=lambda c: len(sim.contents[c][1]))
    sim.fetcher.add_fault(sim.object_url_suffix(ObjectType.FILE, big), FaultKind.TRUNCATE, 1)
    repo = _repo(tmp_path, mode)
    _pull(repo, sim, "os/main", config=cfg)
    _assert_has_all(repo, sim, sim.refs["os/main"])
    # Wrong bytes in a streamed object: refused, nothing left behind.
    other = _repo(tmp_path, mode, name="other")
    sim.fetcher.add_fault(sim.object_url_suffix(ObjectType.FILE, big), FaultKind.GARBLE, -1)
    with pytest.raises((ChecksumMismatch, CorruptObject)):
        _pull(other, sim, "os/main", config=cfg)
    assert not other.has_object(ObjectType.FILE, big)
    assert not [p for p in (other.path / "tmp").rglob("*") if p.is_file() and p.stat().st_size > 1024]
    _no_ref(other)


class _Recording:
    """A signature policy for the hook's test: wants detached metadata, refuses one commit."""

    wants_detached_metadata = True

    def __init__(self, refuse: Checksum | None = None) -> None:
        self.refuse = refuse
        self.commits: list[tuple[Checksum, bytes | None]] = []
        self.summaries: list[tuple[bytes, bytes | None]] = []

    def check_start(self) -> None:
        pass

    def check_summary(self, data: bytes, signature: bytes | None) -> None:
        self.summaries.append((data, signature))

    def check_commit(self, csum: Checksum, commit: VerifiedMetadata, detached: bytes | None) -> None:
        self.commits.append((csum, detached))
        if csum == self.refuse:
            raise VerificationError(f"commit {csum}: no valid signature")


def _job(repo: Repo, sim: RemoteSimulator, policy: _Recording) -> PullJob:
    session = RemoteSession(sim.fetcher, "mem://remote", config=CFG, policy=policy)
    found = session.summary()
    assert found is not None
    resolved = resolve_targets([PullTarget("os/main")], found.summary)
    refs_of = {c: [t.ref] for t, c in resolved.items() if t.ref}
    source = HttpSource(sim.fetcher, session.url, None, CFG)
    return PullJob(repo, source, resolved, lambda r: f"origin:{r}", Verifier(policy, refs_of), PullOptions(), CFG)


def test_signature_hook_sees_summary_and_detached_metadata(sim: RemoteSimulator, tmp_path: Path) -> None:
    from bootree.format import gvariant
    from bootree.pull.plan import object_path

    v1 = sim.refs["os/main"]
    detached = gvariant.encode("a{sv}", [("ostree.sign.ed25519", Variant("aay", [b"sig"]))])
    sim.fetcher.files[sim.url(object_path(ObjectType.COMMIT_META, v1))] = detached
    sim.fetcher.files[sim.url("summary.sig")] = b"summary-signature"
    policy = _Recording()
    repo = _repo(tmp_path)
    run_pull(_job(repo, sim, policy))
    assert policy.summaries == [(sim.fetcher.files[sim.url("summary")], b"summary-signature")]
    assert policy.commits == [(v1, detached)]  # the commit waited for its detached metadata
    assert repo.refs.get("origin:os/main") == v1 and repo.read_commitmeta(v1) == detached


def test_signature_hook_refusal_writes_nothing(sim: RemoteSimulator, tmp_path: Path) -> None:
    v1 = sim.refs["os/main"]
    policy = _Recording(refuse=v1)
    repo = _repo(tmp_path)
    with pytest.raises(VerificationError, match="no valid signature"):
        run_pull(_job(repo, sim, policy))
    assert policy.commits == [(v1, None)]  # no .commitmeta on the remote: None
    assert not repo.has_object(ObjectType.COMMIT, v1)
    assert not any(h.endswith(".filez") for h in sim.fetcher.hits)  # nothing of its tree fetched
    _no_ref(repo)


def test_no_signatures_policy_does_not_wait() -> None:
    assert NoSignatures().wants_detached_metadata is False


def test_mirror_planning_is_linear_in_refs() -> None:
    # Issue 10 defect 6: 150,000 summary refs took 266 s of CPU before the first request.
    commit = Checksum("c" * 64)
    refs = tuple(SummaryRef(f"r/{i:06d}", commit, 100) for i in range(150_000))
    summary = Summary(refs)
    targets = [PullTarget(r.name) for r in summary.refs]
    t0 = time.process_time()
    resolved = resolve_targets(targets, summary)
    took = time.process_time() - t0
    assert len(resolved) == 150_000 and set(resolved.values()) == {commit}
    assert took < 5, took
