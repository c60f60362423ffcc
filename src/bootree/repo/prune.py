"""Prune and commit deletion, as ostree's: roots, per-branch depths, tombstone commits.

Layer: repo. Prune deletes what its roots do not reach, under the repository's exclusive lock
so that no transaction publishes at the same time. Which commits are roots follows
``ostree prune``: with no per-branch option every ref (and, without ``refs_only``, every commit)
is walked ``depth`` parents deep; with ``keep_younger_than``, ``retain_branch_depth`` or
``only_branches`` the refs alone are roots, each walked as its own option says.

A deleted commit leaves a *tombstone* (``objects/XX/….tombstone-commit``, an ``a{sv}`` naming
the commit) when the config sets ``[core] tombstone-commits=true``, so that a pull, or a
client of this repository, can tell "deleted on purpose" from "never fetched"; publishing the
commit again removes its tombstone (see :mod:`bootree.repo.transaction`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bootree import _fs
from bootree.errors import BootreeError, ObjectMissing, RefNotFound, RepoError
from bootree.format import gvariant
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType
from bootree.repo.staging import clean_stale
from bootree.repo.traverse import ObjectName, PruneResult, reachable_objects

if TYPE_CHECKING:
    from bootree.repo.repo import Repo

__all__ = ["PruneOptions", "add_tombstones", "delete_commit", "enable_tombstones", "encode_tombstone", "prune_repo", "write_tombstone"]


@dataclass(frozen=True)
class PruneOptions:
    """What ``ostree prune`` is asked to keep and delete."""

    refs_only: bool = False
    depth: int = -1
    keep_younger_than: int | None = None
    """Unix time: on each ref, commits at least this new are kept (a ref's own commit always)."""
    retain_branch_depth: Mapping[str, int] = field(default_factory=dict)
    """Refs walked to their own depth (-1 = all), whatever ``depth`` and ``keep_younger_than`` say."""
    only_branches: Sequence[str] = ()
    """Prune only these refs; every other ref is kept whole (as ``retain_branch_depth=-1``)."""
    commit_only: bool = False
    """Walk and delete commit objects only; trees and content stay."""
    dry_run: bool = False


def encode_tombstone(csum: Checksum) -> bytes:
    """A tombstone's bytes: ``{'commit': <b'HEX'>}`` (a bytestring: the hex and a NUL), as ostree writes."""
    return gvariant.encode("a{sv}", [("commit", Variant("ay", csum.encode() + b"\0"))])


def tombstones_enabled(repo: Repo) -> bool:
    """Whether the config asks for tombstones (``[core] tombstone-commits``)."""
    return repo.config.get_bool("core", "tombstone-commits", False)


def enable_tombstones(repo: Repo) -> None:
    """Set ``[core] tombstone-commits=true`` (written only when it was not already)."""
    if not tombstones_enabled(repo):
        repo.config.set("core", "tombstone-commits", "true")
        repo.save_config()


def write_tombstone(repo: Repo, csum: Checksum) -> None:
    """Durably write the tombstone of ``csum``."""
    path = repo.store.path(ObjectType.TOMBSTONE_COMMIT, csum)
    _fs.makedirs(path.parent)
    _fs.write_atomic(path, encode_tombstone(csum), fsync=repo.fsync)


def _delete_commit_object(repo: Repo, csum: Checksum, *, tombstone: bool) -> None:
    """Remove a commit, its detached metadata and partial marker; tombstone it if asked.

    Raises:
        ObjectMissing: if the commit is not in the repository.
    """
    store = repo.store
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.path(ObjectType.COMMIT_META, csum))
    try:
        os.unlink(store.path(ObjectType.COMMIT, csum))
    except FileNotFoundError:
        raise ObjectMissing(csum, ObjectType.COMMIT.value) from None
    repo.partial.clear(csum)
    if tombstone:
        write_tombstone(repo, csum)


def delete_commit(repo: Repo, csum: Checksum) -> None:
    """``prune --delete-commit``: remove one commit that no ref names, leaving a tombstone.

    As ostree, this turns tombstones on in the config first.

    Raises:
        RepoError: if a ref (or a collection ref) points at it.
        ObjectMissing: if it is not in the repository.
    """
    for name, c in repo.refs.list().items():
        if c == csum and ":" not in name:
            raise RepoError(f"Commit '{csum}' is referenced by '{name}'")
    for (cid, ref), c in repo.refs.list_mirrors().items():
        if c == csum:
            raise RepoError(f"Commit '{csum}' is referenced by ({cid}, {ref})")
    enable_tombstones(repo)
    with repo.lock(exclusive=True):
        _delete_commit_object(repo, csum, tombstone=True)


def add_tombstones(repo: Repo) -> list[Checksum]:
    """``fsck --add-tombstones``: delete (and tombstone) every commit whose parent is gone.

    Such a commit is what a depth-limited prune leaves at the end of a history; ostree turns
    it into a tombstone so that the history visibly ends there. Returns the commits, sorted.
    """
    found: list[Checksum] = []
    commits = sorted(c for t, c in repo.store.iter_objects() if t is ObjectType.COMMIT)
    for c in commits:
        try:
            parent = repo.reader.read_commit(c).parent
        except BootreeError:
            continue  # fsck reports a bad commit; it is not a history's end
        if parent is not None and not repo.store.has(ObjectType.COMMIT, parent):
            found.append(c)
    if found:
        enable_tombstones(repo)
        with repo.lock(exclusive=True):
            for c in found:
                _delete_commit_object(repo, c, tombstone=True)
    return found


def _younger_chain(repo: Repo, tip: Checksum, since: int) -> list[Checksum]:
    """A ref's own commit and then its ancestors while they are at least ``since`` new."""
    chain = [tip]
    csum: Checksum | None = tip
    while csum is not None:
        try:
            commit = repo.reader.read_commit(csum)
        except ObjectMissing:
            break  # pruned before: the history ends here
        if commit.timestamp < since:
            break
        if csum != tip:
            chain.append(csum)
        csum = commit.parent
    return chain


def _commit_chain(repo: Repo, tip: Checksum, depth: int) -> set[ObjectName]:
    """The commits (alone) of a ref's history, ``depth`` parents deep (-1 = all)."""
    out: set[ObjectName] = set()
    csum: Checksum | None = tip
    level = 0
    while csum is not None and (ObjectType.COMMIT, csum) not in out:
        try:
            commit = repo.reader.read_commit(csum)
        except ObjectMissing:
            if level == 0:
                raise
            break
        out.add((ObjectType.COMMIT, csum))
        if 0 <= depth <= level:
            break
        level += 1
        csum = commit.parent
    return out


def _reachable(repo: Repo, tips: Sequence[Checksum], depth: int, commit_only: bool) -> set[ObjectName]:
    if not commit_only:
        return reachable_objects(repo.reader, repo.partial, sorted(tips), depth=depth)
    out: set[ObjectName] = set()
    for t in sorted(tips):
        out |= _commit_chain(repo, t, depth)
    return out


def _keep(repo: Repo, opts: PruneOptions, commits: Sequence[Checksum]) -> set[ObjectName]:
    """The objects the roots of ``opts`` reach."""
    refs = repo.refs.list()
    per_branch = opts.keep_younger_than is not None or bool(opts.retain_branch_depth) or bool(opts.only_branches)
    if not per_branch:
        roots = set(refs.values()) | set(repo.refs.list_mirrors().values())
        if not opts.refs_only:
            roots.update(commits)
        return _reachable(repo, sorted(roots), opts.depth, opts.commit_only)
    retain = dict(opts.retain_branch_depth)
    if opts.only_branches:
        for ref in opts.only_branches:
            try:
                repo.resolve_rev(ref)
            except RefNotFound:
                raise RepoError(f"Refspec '{ref}' not found") from None
        for ref in refs:
            if ref not in opts.only_branches:
                retain.setdefault(ref, -1)
    keep: set[ObjectName] = set()
    for ref, tip in sorted(refs.items()):
        if ref in retain:
            keep |= _reachable(repo, [tip], retain[ref], opts.commit_only)
        elif opts.keep_younger_than is not None:
            for c in _younger_chain(repo, tip, opts.keep_younger_than):
                keep |= _reachable(repo, [c], 0, opts.commit_only)
        else:
            keep |= _reachable(repo, [tip], opts.depth, opts.commit_only)
    return keep


def prune_repo(repo: Repo, opts: PruneOptions) -> PruneResult:
    """Delete the objects (with ``commit_only``, the commits) that no root of ``opts`` reaches.

    Deleted commits lose their detached metadata and partial marker, and leave a tombstone
    when the config asks for them. ``total`` counts the objects considered (ostree's "Total
    objects": detached metadata and tombstones are not objects of their own).

    Raises:
        RepoError: for an ``only_branches`` ref that does not exist.
        ObjectMissing: for a ref whose commit is missing.
    """
    store = repo.store
    tombstone = tombstones_enabled(repo)
    with repo.lock(exclusive=True):
        clean_stale(store.root / "tmp")
        considered = [(t, c) for t, c in store.iter_objects() if t is not ObjectType.COMMIT_META]
        if opts.commit_only:
            considered = [(t, c) for t, c in considered if t is ObjectType.COMMIT]
        commits = [c for t, c in considered if t is ObjectType.COMMIT]
        keep = _keep(repo, opts, commits)
        deleted = freed = 0
        for otype, csum in considered:
            if (otype, csum) in keep:
                continue
            try:
                size = os.lstat(store.path(otype, csum)).st_size
            except FileNotFoundError:
                continue
            deleted += 1
            freed += size
            if opts.dry_run:
                continue
            if otype is ObjectType.COMMIT:
                with contextlib.suppress(ObjectMissing):
                    _delete_commit_object(repo, csum, tombstone=tombstone)
            else:
                store.delete(otype, csum)
        return PruneResult(len(considered), deleted, freed)
