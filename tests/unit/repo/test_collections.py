"""Collection refs and bindings: where collection refs live, what the binding checks accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootree.errors import BindingError, InvalidRefName
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit
from bootree.repo import Repo
from bootree.repo.collections import (
    CollectionRef,
    binding_metadata,
    check_back_refs,
    list_collection_refs,
    set_collection_ref,
    validate_collection_id,
    verify_bindings_of,
)

Z = Checksum("00" * 32)


def _commit(meta: list[tuple[str, Variant]]) -> Commit:
    return Commit(root_tree=Z, root_meta=Z, metadata=tuple(meta))


@pytest.mark.parametrize("cid", ["org.example.Os", "a.b", "_x.y-z"])
def test_valid_collection_ids(cid: str) -> None:
    validate_collection_id(cid)


@pytest.mark.parametrize("cid", ["single", "org..x", "1org.x", "org.x.", "a" * 250 + ".bcdefg"])
def test_invalid_collection_ids(cid: str) -> None:
    with pytest.raises(InvalidRefName):
        validate_collection_id(cid)


def test_binding_metadata_keeps_a_given_key_and_appends_in_ostree_order() -> None:
    given = [("zz", Variant("s", "1")), ("ostree.collection-binding", Variant("s", "x.y"))]
    out = binding_metadata(given, ["b", "a"], "org.example.C")
    assert out == [*given, ("ostree.ref-binding", Variant("as", ["a", "b"]))]
    assert binding_metadata([], [], None) == []


def test_verify_bindings_messages() -> None:
    bound = _commit([("ostree.ref-binding", Variant("as", ["r1", "r2"])), ("ostree.collection-binding", Variant("s", "a.b"))])
    verify_bindings_of(bound, "a.b", "r1")
    verify_bindings_of(_commit([]), None, "anything")
    with pytest.raises(BindingError, match="no requested ref ‘x’ in ref binding metadata \\(‘r1’, ‘r2’\\)"):
        verify_bindings_of(bound, None, "x")
    with pytest.raises(BindingError, match=r"collection ID ‘a\.b’ in collection binding metadata, while the remote it came from has collection ID ‘c\.d’"):
        verify_bindings_of(bound, "c.d", "r1")
    with pytest.raises(BindingError, match="ref binding information, found none"):
        verify_bindings_of(_commit([]), "a.b", "r1")


def test_collection_refs_live_in_heads_mirrors_and_remotes(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", collection_id="org.example.Own")
    csum = repo.commit([], branch="main")
    repo.config.set('remote "r"', "collection-id", "org.example.Remote")
    repo.config.set('remote "plain"', "url", "file:///nowhere")
    set_collection_ref(repo.refs, repo.config, CollectionRef("org.example.Other", "m"), csum)
    repo.set_ref("r:x", csum)
    repo.set_ref("plain:y", csum)
    found = list_collection_refs(repo.refs, repo.config)
    assert list(found) == [
        CollectionRef("org.example.Other", "m"),
        CollectionRef("org.example.Own", "main"),
        CollectionRef("org.example.Remote", "x"),
    ]
    assert (repo.path / "refs" / "mirrors" / "org.example.Other" / "m").read_text() == csum + "\n"
    assert list(list_collection_refs(repo.refs, repo.config, remotes=False)) == list(found)[:2]
    set_collection_ref(repo.refs, repo.config, CollectionRef("org.example.Own", "main"), None)
    assert repo.refs.get("main") is None
    with pytest.raises(BindingError, match=r"Collection–ref \(org.example.Own, main\) in bindings for commit"):
        check_back_refs(repo.refs, repo.config, csum, repo.read_commit(csum))
    assert repo.read_commit(csum).get("ostree.collection-binding") == "org.example.Own"
