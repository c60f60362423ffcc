"""The config finder's choices: collection refs of a summary, and the newest commit wins."""

from __future__ import annotations

from bootree.format.checksum import Checksum
from bootree.format.objects import Commit
from bootree.format.summary import Summary
from bootree.pull.finder import FinderResult, FoundCommit, choose_sources, summary_refs
from bootree.pull.remote import Remote
from bootree.repo.collections import CollectionRef

A = Checksum("a" * 64)
B = Checksum("b" * 64)
APP = CollectionRef("org.example.Apps", "app1")
OS = CollectionRef("org.example.Os", "os/main")


def _result(name: str, refs: dict[CollectionRef, FoundCommit | None]) -> FinderResult:
    return FinderResult(Remote(name, (("url", f"file:///{name}"),)), refs)


def test_newest_commit_wins_over_an_outdated_mirror() -> None:
    results = [
        _result("mirror", {OS: FoundCommit(A, 100)}),
        _result("origin", {OS: FoundCommit(B, 200)}),
    ]
    assert choose_sources(results, [OS]) == {"origin": {"os/main": B}}


def test_ties_go_to_the_first_result_and_missing_refs_are_skipped() -> None:
    results = [
        _result("one", {APP: FoundCommit(A, 100), OS: None}),
        _result("two", {APP: FoundCommit(B, 100), OS: FoundCommit(B, 5)}),
    ]
    assert choose_sources(results, [APP, OS]) == {"one": {"app1": A}, "two": {"os/main": B}}


def test_summary_refs_reads_main_collection_and_collection_map() -> None:
    commit = Commit(A, B, subject="s", timestamp=1_700_000_000)
    data = commit.to_bytes()
    summary = Summary.build(
        {"app1": (A, data)},
        mode="archive-z2",
        last_modified=1,
        collection_id="org.example.Apps",
        collection_map={"org.example.Os": {"os/main": (B, data)}},
    )
    refs = summary_refs(Summary.from_bytes(summary.to_bytes()))
    assert set(refs) == {APP, OS}
    assert refs[APP].commit == A and refs[OS].commit == B
    assert refs[APP].timestamp == 1_700_000_000


def test_a_summary_without_collection_id_offers_no_collection_refs() -> None:
    data = Commit(A, B, subject="s").to_bytes()
    assert summary_refs(Summary.build({"app1": (A, data)}, mode="archive-z2", last_modified=1)) == {}
