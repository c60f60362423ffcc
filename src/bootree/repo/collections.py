"""Collection IDs: refs named globally as ``(collection ID, ref)``, and the bindings that tie a
commit to them.

Layer: repo. A repository with ``[core] collection-id`` publishes its ``refs/heads`` under that
collection; refs of other collections it carries live under ``refs/mirrors/COLLECTION/REF``; a
remote with ``collection-id`` in its config section names its ``refs/remotes/REMOTE/*`` so. The
rules are ostree's (``ostree_repo_list_collection_refs``, ``ostree_repo_set_collection_ref_immediate``
and the binding checks of pulls and ``fsck --verify-bindings``), so that a repository written by
either tool reads the same in the other. The commit checks are pure: they take a :class:`Commit`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootree.errors import BindingError, InvalidRefName
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.keyfile import KeyFile
from bootree.format.objects import Commit
from bootree.format.refspec import validate_ref_name
from bootree.repo.refs import RefStore

__all__ = [
    "COLLECTION_BINDING_KEY",
    "REF_BINDING_KEY",
    "CollectionRef",
    "binding_metadata",
    "check_back_refs",
    "fsck_bindings",
    "list_collection_refs",
    "resolve_collection_ref",
    "set_collection_ref",
    "validate_collection_id",
    "verify_bindings_of",
]

REF_BINDING_KEY = "ostree.ref-binding"
COLLECTION_BINDING_KEY = "ostree.collection-binding"

# ostree's rule: at least two dot-separated elements of [A-Za-z0-9_-], none starting with a digit.
_COLLECTION_ID = re.compile(r"(?:[A-Za-z_-][A-Za-z0-9_-]*\.)+[A-Za-z_-][A-Za-z0-9_-]*")


def validate_collection_id(collection_id: str) -> None:
    """Refuse a collection ID ostree would refuse (reverse-DNS style, at most 255 bytes).

    Raises:
        InvalidRefName: for a malformed ID.
    """
    if len(collection_id.encode()) > 255 or not _COLLECTION_ID.fullmatch(collection_id):
        raise InvalidRefName(collection_id, f"Invalid collection ID {collection_id}")


@dataclass(frozen=True, order=True, slots=True)
class CollectionRef:
    """A ref named globally: its collection and its name within it."""

    collection_id: str
    ref: str

    def __str__(self) -> str:
        return f"({self.collection_id}, {self.ref})"


def _remote_collection_id(config: KeyFile, remote: str) -> str | None:
    return config.get(f'remote "{remote}"', "collection-id") or None


def list_collection_refs(
    refs: RefStore,
    config: KeyFile,
    match_collection_id: str | None = None,
    *,
    remotes: bool = True,
    mirrors: bool = True,
) -> dict[CollectionRef, Checksum]:
    """Every ref that has a collection ID, as ostree lists them: the repository's own branches
    (under its ``core.collection-id``, none without one), ``refs/mirrors``, and (with ``remotes``)
    the refs of remotes whose config names a collection ID. ``match_collection_id`` keeps only
    that collection's refs.

    Raises:
        CorruptObject: for a ref file that does not hold a checksum.
    """
    out: dict[CollectionRef, Checksum] = {}
    own = config.get("core", "collection-id") or None
    if own is not None:
        for name, csum in refs.list().items():
            if ":" not in name:
                out[CollectionRef(own, name)] = csum
    if mirrors:
        for (cid, ref), csum in refs.list_mirrors().items():
            out[CollectionRef(cid, ref)] = csum
    if remotes:
        remotes_dir = refs.refs / "remotes"
        for remote in sorted(os.listdir(remotes_dir)) if remotes_dir.is_dir() else []:
            remote_cid = _remote_collection_id(config, remote)
            if remote_cid is None:
                continue
            for name, csum in refs.list(remote=remote).items():
                out[CollectionRef(remote_cid, name.partition(":")[2])] = csum
    if match_collection_id is not None:
        out = {k: v for k, v in out.items() if k.collection_id == match_collection_id}
    return dict(sorted(out.items()))


def _path(refs: RefStore, config: KeyFile, cref: CollectionRef) -> tuple[str | None, Path]:
    """Where a collection ref lives: a local branch (``refs/heads``) for the repository's own
    collection, else ``refs/mirrors/COLLECTION/REF``."""
    if cref.collection_id == (config.get("core", "collection-id") or None):
        return cref.ref, refs.refs / "heads" / cref.ref
    return None, refs.mirror_path(cref.collection_id, cref.ref)


def resolve_collection_ref(refs: RefStore, config: KeyFile, cref: CollectionRef) -> Checksum | None:
    """The commit a collection ref points to (own branch, mirror, or a remote of that
    collection), or ``None``.

    Raises:
        CorruptObject: for a ref file that does not hold a checksum.
    """
    branch, _ = _path(refs, config, cref)
    if branch is not None:
        found = refs.get(branch)
        if found is not None:
            return found
    else:
        found = refs.list_mirrors().get((cref.collection_id, cref.ref))
        if found is not None:
            return found
    return list_collection_refs(refs, config, cref.collection_id, mirrors=False).get(cref)


def set_collection_ref(
    refs: RefStore, config: KeyFile, cref: CollectionRef, csum: Checksum | None, *, fsync: bool = True
) -> None:
    """Point a collection ref at ``csum`` (``None`` deletes it), atomically: the repository's
    own collection is its branches, any other one a mirror (``refs/mirrors`` is created when an
    old repository lacks it).

    Raises:
        InvalidRefName: for a malformed collection ID or ref name.
    """
    validate_collection_id(cref.collection_id)
    validate_ref_name(cref.ref)
    branch, _ = _path(refs, config, cref)
    if branch is not None:
        refs.set(branch, csum, fsync=fsync)
    else:
        refs.set_mirror(cref.collection_id, cref.ref, csum, fsync=fsync)


def binding_metadata(
    meta: list[tuple[str, Variant]], refs: list[str], collection_id: str | None
) -> list[tuple[str, Variant]]:
    """``meta`` with the bindings ostree's ``commit`` adds: ``ostree.ref-binding`` (``refs``,
    sorted) and, in a repository with a collection ID, ``ostree.collection-binding``; a key the
    caller set already is kept as given."""
    out = list(meta)
    keys = {k for k, _ in out}
    if refs and REF_BINDING_KEY not in keys:
        out.append((REF_BINDING_KEY, Variant("as", sorted(set(refs)))))
    if collection_id is not None and COLLECTION_BINDING_KEY not in keys:
        out.append((COLLECTION_BINDING_KEY, Variant("s", collection_id)))
    return out


def _bound_refs(commit: Commit) -> list[str] | None:
    for k, v in commit.metadata:
        if k == REF_BINDING_KEY:
            names: Any = v.value  # a list of str when the type is "as"
            return list(names) if v.type == "as" else None
    return None


def _bound_collection(commit: Commit) -> str | None:
    for k, v in commit.metadata:
        if k == COLLECTION_BINDING_KEY:
            return v.value if v.type == "s" and isinstance(v.value, str) else None
    return None


def verify_bindings_of(commit: Commit, collection_id: str | None, ref: str | None) -> None:
    """Check that ``commit`` was made for ``ref`` (of ``collection_id``), as ostree does for each
    ref it pulls and for ``fsck --verify-bindings``.

    A commit without ``ostree.ref-binding`` passes unless a collection is expected; one with
    it must list ``ref``; with a ``collection_id`` the commit's ``ostree.collection-binding``
    must equal it.

    Raises:
        BindingError: with ostree's wording.
    """
    bound = _bound_refs(commit)
    if bound is None:
        if collection_id is None:
            return
        raise BindingError("Expected commit metadata to have ref binding information, found none")
    if ref is not None and ref not in bound:
        listed = ", ".join(f"‘{r}’" for r in bound) if bound else "no refs"
        raise BindingError(f"Commit has no requested ref ‘{ref}’ in ref binding metadata ({listed})")
    if collection_id is not None:
        found = _bound_collection(commit)
        if found is None:
            raise BindingError("Expected commit metadata to have collection ID binding information, found none")
        if found != collection_id:
            raise BindingError(
                f"Commit has collection ID ‘{found}’ in collection binding metadata, while the remote "
                f"it came from has collection ID ‘{collection_id}’"
            )


def check_back_refs(refs: RefStore, config: KeyFile, csum: Checksum, commit: Commit) -> None:
    """``fsck --verify-back-refs``: every ref a commit is bound to must exist (and, for a
    collection-bound commit, as that collection's ref).

    Raises:
        BindingError: for a bound ref that does not exist, with ostree's wording.
    """
    collection = _bound_collection(commit)
    for ref in _bound_refs(commit) or []:
        if collection is not None:
            if resolve_collection_ref(refs, config, CollectionRef(collection, ref)) is None:
                raise BindingError(f"Collection–ref ({collection}, {ref}) in bindings for commit {csum} does not exist")
        elif refs.get(ref) is None:
            raise BindingError(f"Ref ‘{ref}’ in bindings for commit {csum} does not exist")


def fsck_bindings(
    refs: RefStore,
    config: KeyFile,
    read_commit: Callable[[Checksum], Commit | None],
    commits: Iterable[Checksum],
    *,
    verify_bindings: bool,
    verify_back_refs: bool,
) -> None:
    """``fsck --verify-bindings`` (each ref's commit is bound to it, each collection ref's also to
    its collection) and ``--verify-back-refs`` (each ref a commit is bound to exists), in
    ostree's order. ``read_commit`` returns ``None`` for a commit that is missing or unreadable
    (fsck reports those itself).

    Raises:
        BindingError: the first binding that does not hold, prefixed with its commit.
    """
    if verify_bindings:
        for name, csum in refs.list().items():
            commit = read_commit(csum)
            if commit is not None:
                _verify_prefixed(csum, commit, None, name.rpartition(":")[2])
        for cref, csum in list_collection_refs(refs, config, remotes=False).items():
            commit = read_commit(csum)
            if commit is not None:
                _verify_prefixed(csum, commit, cref.collection_id, cref.ref)
    if verify_back_refs:
        for csum in sorted(commits):
            commit = read_commit(csum)
            if commit is not None:
                check_back_refs(refs, config, csum, commit)


def _verify_prefixed(csum: Checksum, commit: Commit, collection_id: str | None, ref: str) -> None:
    try:
        verify_bindings_of(commit, collection_id, ref)
    except BindingError as e:
        raise BindingError(f"Commit {csum}: {e}") from None
