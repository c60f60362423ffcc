"""The sans-IO planner: what to fetch, what to read locally, dedup, depth, resume."""

from __future__ import annotations

import pytest

from bootree.errors import RefNotFound
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit, DirTree, ObjectType
from bootree.format.summary import Summary
from bootree.pull.plan import (
    Action,
    ActionKind,
    PullPlan,
    PullTarget,
    object_path,
    parse_pull_refs,
    resolve_targets,
)


def c(n: int) -> Checksum:
    return Checksum(f"{n:064x}")


TREE = DirTree(files=(("a", c(10)), ("b", c(11)), ("dup", c(10))), dirs=(("sub", c(20), c(30)),))
COMMIT = Commit(root_tree=c(2), root_meta=c(3), parent=c(99))


def test_object_path() -> None:
    assert object_path(ObjectType.FILE, c(1)) == f"objects/00/{'0' * 61}1.filez"
    assert object_path(ObjectType.COMMIT_META, c(1)).endswith(".commitmeta")


def test_fresh_walk() -> None:
    plan = PullPlan(lambda _t, _c: False)
    first = plan.start_commit(c(1), depth=0)
    assert first == [Action(ObjectType.COMMIT_META, c(1), optional=True), Action(ObjectType.COMMIT, c(1))]
    nxt = plan.commit_arrived(c(1), COMMIT, depth=0)
    assert [(a.otype, a.checksum) for a in nxt] == [(ObjectType.DIR_META, c(3)), (ObjectType.DIR_TREE, c(2))]
    files = plan.dirtree_arrived(TREE)
    # c(10) appears twice in the tree but is fetched once
    assert [(a.otype, a.checksum) for a in files] == [
        (ObjectType.FILE, c(10)),
        (ObjectType.FILE, c(11)),
        (ObjectType.DIR_META, c(30)),
        (ObjectType.DIR_TREE, c(20)),
    ]
    assert plan.fetch_content == 2 and plan.walked_commits == [c(1)]


def test_present_objects_skipped_but_local_dirtrees_walked() -> None:
    have = {(ObjectType.FILE, c(10)), (ObjectType.DIR_TREE, c(20)), (ObjectType.DIR_META, c(30))}
    plan = PullPlan(lambda t, x: (t, x) in have)
    out = plan.dirtree_arrived(TREE)
    assert Action(ObjectType.DIR_TREE, c(20), kind=ActionKind.READ_LOCAL) in out
    assert all(a.checksum not in (c(10), c(30)) for a in out)


def test_complete_commit_needs_only_commitmeta_partial_is_resumed() -> None:
    have = {(ObjectType.COMMIT, c(1))}
    plan = PullPlan(lambda t, x: (t, x) in have)
    assert plan.start_commit(c(1), depth=0) == [Action(ObjectType.COMMIT_META, c(1), optional=True)]
    plan = PullPlan(lambda t, x: (t, x) in have, is_partial=lambda x: x == c(1))
    assert Action(ObjectType.COMMIT, c(1), kind=ActionKind.READ_LOCAL) in plan.start_commit(c(1), depth=0)


def test_metadata_only_and_depth() -> None:
    plan = PullPlan(lambda _t, _c: False, metadata_only=True)
    out = plan.commit_arrived(c(1), COMMIT, depth=1)
    assert [(a.otype, a.checksum, a.parent) for a in out if a.otype is ObjectType.COMMIT] == [
        (ObjectType.COMMIT, c(99), True)
    ]
    assert not any(a.otype is ObjectType.DIR_TREE for a in out)
    assert plan.walked_commits == []
    plan = PullPlan(lambda _t, _c: False)
    assert not any(a.otype is ObjectType.COMMIT for a in plan.commit_arrived(c(1), COMMIT, depth=0))


def test_refs_parsing_and_resolution() -> None:
    ts = parse_pull_refs(["os/main", f"os/x@{c(5)}", c(6)])
    assert ts == [PullTarget("os/main"), PullTarget("os/x", c(5)), PullTarget(None, c(6))]
    summary = Summary.build({}, mode="archive-z2", last_modified=0)
    got = resolve_targets(ts[1:], summary)
    assert got == {PullTarget("os/x", c(5)): c(5), PullTarget(None, c(6)): c(6)}
    assert resolve_targets([ts[0]], None, {"os/main": c(7)}) == {ts[0]: c(7)}
    with pytest.raises(RefNotFound):
        resolve_targets([ts[0]], summary)


def test_trusted_local_trees_are_not_walked() -> None:
    have = {(ObjectType.DIR_TREE, c(20))}
    plan = PullPlan(lambda t, x: (t, x) in have, trust_local_trees=True)
    out = plan.dirtree_arrived(TREE)
    assert all(a.checksum != c(20) for a in out)
