"""Walking what commits reach: reachability and fsck (prune is :mod:`bootree.repo.prune`).

Layer: repo. fsck re-hashes every object it checks (metadata and content, in parallel) and
reports each bad one by checksum.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from bootree.errors import BootreeError, ChecksumMismatch, CorruptObject, ObjectMissing
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit, DirTree, ObjectType
from bootree.repo.objectstore import DiskObjectStore
from bootree.repo.partial import PartialMarkers
from bootree.repo.reader import ObjectReader
from bootree.repo.refs import RefStore

__all__ = ["FsckProblem", "FsckResult", "ObjectName", "PruneResult", "fsck", "reachable_objects"]

ObjectName = tuple[ObjectType, Checksum]


def _walk_tree(reader: ObjectReader, tree: Checksum, meta: Checksum, out: set[ObjectName]) -> None:
    """Add to ``out`` everything under ``tree``; a dirtree already in ``out`` is not read again.

    Names play no part in reachability, so each dirtree is read for its checksums alone
    (:meth:`ObjectReader.read_dirtree_children`: no name decoding, about half the parse).
    """
    stack = [(tree, meta)]
    file_t, tree_t, meta_t = ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.DIR_META
    add = out.add
    children = reader.read_dirtree_children
    while stack:
        t, m = stack.pop()
        add((meta_t, m))
        if (tree_t, t) in out:
            continue
        add((tree_t, t))
        files, dirs = children(t)
        out.update([(file_t, c) for c in files])
        stack.extend(dirs)


def reachable_objects(
    reader: ObjectReader,
    partial: PartialMarkers,
    commits: Iterable[Checksum],
    *,
    depth: int = 0,
    ignore_missing_parents: bool = True,
) -> set[ObjectName]:
    """Every object reachable from ``commits`` (and up to ``depth`` parents; -1 = all).

    Partial commits contribute what is present of their tree.

    Raises:
        ObjectMissing: for a missing commit or (in a complete commit) a missing dirtree.
    """
    out: set[ObjectName] = set()
    for start in commits:
        csum: Checksum | None = start
        level = 0
        while csum is not None:
            if (ObjectType.COMMIT, csum) in out:
                break
            try:
                commit = reader.read_commit(csum)
            except ObjectMissing:
                if level > 0 and ignore_missing_parents:
                    break
                raise
            out.add((ObjectType.COMMIT, csum))
            if reader.store.has(ObjectType.COMMIT_META, csum):
                out.add((ObjectType.COMMIT_META, csum))
            try:
                _walk_tree(reader, commit.root_tree, commit.root_meta, out)
            except ObjectMissing:
                if not partial.is_partial(csum):
                    raise
            if depth >= 0 and level >= depth:
                break
            level += 1
            csum = commit.parent
    return out


@dataclass(frozen=True, slots=True)
class FsckProblem:
    """One bad object (or ref)."""

    kind: str
    checksum: str
    message: str
    commits: tuple[Checksum, ...] = ()
    """The commits that reach the bad object (what ostree's "In commits ..." names)."""


def _missing(problem: FsckProblem) -> bool:
    """Whether a problem is an absent object (a partial commit may lack objects)."""
    return problem.message.startswith(("Object missing", "No such metadata object"))


@dataclass
class FsckResult:
    """What fsck checked and what it found."""

    commits: int = 0
    objects: int = 0
    partial: list[Checksum] = field(default_factory=list)
    problems: list[FsckProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no object is bad."""
        return not self.problems

    def to_json(self) -> dict[str, object]:
        """``fsck --json``: ``ok`` first, then the counts, partial commits and problems."""
        return {
            "ok": self.ok,
            "commits": self.commits,
            "objects": self.objects,
            "partial": list(self.partial),
            "problems": [
                {"kind": p.kind, "checksum": p.checksum, "message": p.message, "commits": list(p.commits)}
                for p in self.problems
            ],
        }


def _check_meta(store: DiskObjectStore, otype: ObjectType, csum: Checksum) -> FsckProblem | None:
    try:
        data = store.load_metadata(otype, csum)
    except ObjectMissing as e:
        return FsckProblem(otype.value, csum, str(e))
    actual = hashlib.sha256(data).hexdigest()
    if actual != csum:
        return FsckProblem(otype.value, csum, f"Corrupted {otype.value} object; checksum expected='{csum}' actual='{actual}'")
    return None


#: Content objects per fsck pool task.
_FSCK_BATCH = 64


def fsck(
    reader: ObjectReader,
    refs: RefStore,
    partial_markers: PartialMarkers,
    *,
    progress: Callable[[int, int], None] | None = None,
    collection_refs: Mapping[str, Checksum] | None = None,
) -> FsckResult:
    """Verify every commit in the repository and every object it reaches.

    Metadata is re-hashed and parsed while walking; content objects are re-hashed (inflated in
    archive mode) in a thread pool. Refs, and the ``collection_refs`` (named ``(COLLECTION,
    REF)``: mirrors and the repository's own collection), must point at existing commits.
    """
    result = FsckResult()
    problems = result.problems
    store = reader.store
    for name, csum in [*refs.list().items(), *(collection_refs or {}).items()]:
        if not store.has(ObjectType.COMMIT, csum):
            problems.append(FsckProblem("ref", name, f"Loading commit for ref {name}: No such metadata object {csum}.commit"))
    commits = [c for t, c in store.iter_objects() if t is ObjectType.COMMIT]
    seen: set[ObjectName] = set()
    files: dict[Checksum, list[Checksum]] = {}
    for csum in sorted(commits):
        result.commits += 1
        problem = _check_meta(store, ObjectType.COMMIT, csum)
        if problem:
            problems.append(problem)
            continue
        try:
            commit: Commit = reader.read_commit(csum)
        except BootreeError as e:
            problems.append(FsckProblem("commit", csum, str(e)))
            continue
        partial = partial_markers.is_partial(csum)
        if partial:
            result.partial.append(csum)
        stack = [(commit.root_tree, commit.root_meta)]
        first_problem = len(problems)
        while stack:
            t, m = stack.pop()
            if (ObjectType.DIR_META, m) not in seen:
                seen.add((ObjectType.DIR_META, m))
                problem = _check_meta(store, ObjectType.DIR_META, m)
                if problem is None:
                    try:
                        reader.read_dirmeta(m)
                    except BootreeError as e:
                        problem = FsckProblem("dirmeta", m, str(e))
                if problem and not (partial and _missing(problem)):
                    problems.append(problem)
            if (ObjectType.DIR_TREE, t) in seen:
                continue
            seen.add((ObjectType.DIR_TREE, t))
            problem = _check_meta(store, ObjectType.DIR_TREE, t)
            if problem:
                if not (partial and _missing(problem)):
                    problems.append(problem)
                continue
            try:
                # Strict: fsck also requires GVariant normal form, which plain reads do not.
                dt = DirTree.from_bytes(store.load_metadata(ObjectType.DIR_TREE, t))
            except BootreeError as e:
                problems.append(FsckProblem("dirtree", t, f"Corrupted dirtree object {t}.dirtree: {e}"))
                continue
            for _, c in dt.files:
                if partial and not store.has(ObjectType.FILE, c):
                    continue
                files.setdefault(c, []).append(csum)
            stack.extend((st, sm) for _, st, sm in dt.dirs)
        for i in range(first_problem, len(problems)):
            problems[i] = replace(problems[i], commits=(csum,))
    result.objects = len(seen) + len(files) + result.commits

    def check_files(batch: list[Checksum]) -> list[FsckProblem]:
        out = []
        for c in batch:
            try:
                store.verify_file(c)
            except (CorruptObject, ChecksumMismatch, ObjectMissing) as e:
                out.append(FsckProblem("file", c, str(e), tuple(dict.fromkeys(files[c]))))
        return out

    done = 0
    ordered = sorted(files)
    from concurrent.futures import ThreadPoolExecutor  # here: only fsck uses a pool

    # Batches, not one task per object: ThreadPoolExecutor.map ignores chunksize, and a
    # future per object cost the walking thread more than the objects' own Python work.
    batches = [ordered[i : i + _FSCK_BATCH] for i in range(0, len(ordered), _FSCK_BATCH)]
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="bootree-fsck") as pool:
        for batch, found in zip(batches, pool.map(check_files, batches), strict=True):
            problems.extend(found)
            before = done
            done += len(batch)
            if progress is not None and done // 512 != before // 512:
                progress(done, len(ordered))
    if progress is not None:
        progress(done, len(ordered))
    return result


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What prune found and deleted."""

    total: int
    deleted: int
    bytes_freed: int
