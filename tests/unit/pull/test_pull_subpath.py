"""``pull --subpath`` planning: only the requested paths and the directories leading to them."""

from __future__ import annotations

import pytest

from bootree.errors import FormatError
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit, DirTree, ObjectType
from bootree.pull.plan import Action, ActionKind, PullPlan, normalize_subpaths


def c(n: int) -> Checksum:
    return Checksum(f"{n:064x}")


# /top.txt  /baz/cow  /baz/deeper/ohyeah  /baz/another/x  /other/y
DEEPER = DirTree(files=(("ohyeah", c(11)),), dirs=())
ANOTHER = DirTree(files=(("x", c(12)),), dirs=())
BAZ = DirTree(files=(("cow", c(13)),), dirs=(("another", c(22), c(32)), ("deeper", c(21), c(31))))
OTHER = DirTree(files=(("y", c(14)),), dirs=())
ROOT = DirTree(files=(("top.txt", c(10)),), dirs=(("baz", c(20), c(30)), ("other", c(23), c(33))))
TREES = {c(1): ROOT, c(20): BAZ, c(21): DEEPER, c(22): ANOTHER, c(23): OTHER}
COMMIT = Commit(root_tree=c(1), root_meta=c(3))


def _walk(plan: PullPlan) -> set[tuple[ObjectType, Checksum]]:
    """Run the plan to the end as the engine would; the objects it fetches."""
    todo: list[Action] = plan.commit_arrived(c(100), COMMIT, depth=0)
    fetched: set[tuple[ObjectType, Checksum]] = set()
    while todo:
        a = todo.pop()
        assert a.kind is ActionKind.FETCH
        fetched.add((a.otype, a.checksum))
        if a.otype is ObjectType.DIR_TREE:
            todo.extend(plan.dirtree_arrived(TREES[a.checksum], checksum=a.checksum, path=a.path))
    return fetched


def test_subpath_fetches_the_path_and_its_ancestors_only() -> None:
    plan = PullPlan(lambda _t, _c: False, subpaths=normalize_subpaths(["/baz/deeper", "baz/another/"]))
    got = _walk(plan)
    files = {x for t, x in got if t is ObjectType.FILE}
    trees = {x for t, x in got if t is ObjectType.DIR_TREE}
    metas = {x for t, x in got if t is ObjectType.DIR_META}
    assert files == {c(11), c(12)}  # not /top.txt, /baz/cow, /other/y
    assert trees == {c(1), c(20), c(21), c(22)}
    assert metas == {c(3), c(30), c(31), c(32)}
    assert plan.walked_commits == []  # the commit stays partial


def test_subpath_to_a_file_and_whole_tree() -> None:
    assert {x for t, x in _walk(PullPlan(lambda _t, _c: False, subpaths=("/top.txt",))) if t is ObjectType.FILE} == {
        c(10)
    }
    everything = _walk(PullPlan(lambda _t, _c: False, subpaths=("/",)))
    assert {x for t, x in everything if t is ObjectType.FILE} == {c(10), c(11), c(12), c(13), c(14)}


def test_a_tree_shared_by_two_paths_is_walked_at_both() -> None:
    # The same dirtree at /a (outside the subpath) and /b (inside): /b's files must come.
    leaf = DirTree(files=(("f", c(50)),), dirs=())
    root = DirTree(files=(), dirs=(("a", c(40), c(30)), ("b", c(40), c(30))))
    trees = {c(1): root, c(40): leaf}
    plan = PullPlan(lambda _t, _c: False, subpaths=("/b",))
    todo = plan.commit_arrived(c(100), COMMIT, depth=0)
    fetched = []
    while todo:
        a = todo.pop(0)
        fetched.append((a.otype, a.checksum))
        if a.otype is ObjectType.DIR_TREE:
            todo.extend(plan.dirtree_arrived(trees[a.checksum], checksum=a.checksum, path=a.path))
    assert (ObjectType.FILE, c(50)) in fetched
    assert fetched.count((ObjectType.DIR_TREE, c(40))) == 1  # fetched once


def test_present_trees_are_read_locally_at_their_path() -> None:
    have = {(ObjectType.DIR_TREE, c(1))}
    plan = PullPlan(lambda t, x: (t, x) in have, subpaths=("/baz",))
    out = plan.commit_arrived(c(100), COMMIT, depth=0)
    local = [a for a in out if a.kind is ActionKind.READ_LOCAL]
    assert [(a.checksum, a.path) for a in local] == [(c(1), "/")]


def test_normalize_subpaths() -> None:
    assert normalize_subpaths([]) is None
    assert normalize_subpaths(["/a/b/", "c", "/"]) == ("/a/b", "/c", "/")
    with pytest.raises(FormatError):
        normalize_subpaths(["/a/../etc"])
