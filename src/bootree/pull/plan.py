"""Sans-IO pull planning: from what arrived and what is present, decide what to fetch next.

Layer: pull. Nothing here touches the network or the disk (the tuf ``TrustedMetadataSet``
shape): the puller feeds in verified objects and gets back :class:`Action` values (fetch this
object, or read that one from the local repository). Presence is asked through an injected
``have`` predicate, so tests drive the planner with a plain set.

The walk follows ostree: for each wanted commit, fetch the commit (and its detached metadata);
unless ``--commit-metadata-only``, walk its root dirtree and dirmeta; for every dirtree, fetch
subtrees, dirmetas and files that are not present. A dirtree already present locally is still
walked (read locally), because an interrupted pull may have left it without its children: that
walk is what makes resume correct. ``depth`` walks that many parents (-1 = all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from bootree.errors import FormatError, RefNotFound
from bootree.format.checksum import Checksum, is_checksum, object_relpath, parse_checksum
from bootree.format.objects import Commit, DirTree, ObjectType
from bootree.format.refspec import validate_ref_name
from bootree.format.summary import Summary

__all__ = [
    "Action",
    "ActionKind",
    "PullPlan",
    "PullTarget",
    "normalize_subpaths",
    "object_path",
    "parse_pull_refs",
    "resolve_targets",
]

Have = Callable[[ObjectType, Checksum], bool]

def object_path(otype: ObjectType, csum: Checksum) -> str:
    """Path of an object in a remote archive repository: ``objects/ab/cdef….filez``."""
    return f"objects/{object_relpath(otype, csum, archive=True)}"


@dataclass(frozen=True, slots=True)
class PullTarget:
    """One thing to pull: a ref (None for a bare commit), and a pinned commit if given."""

    ref: str | None
    commit: Checksum | None = None


def parse_pull_refs(args: Sequence[str]) -> list[PullTarget]:
    """Parse ``pull`` arguments: ``REF``, ``REF@COMMIT`` (pin, as ostree) or a bare ``COMMIT``.

    Raises:
        InvalidRefName: for a malformed ref.
        InvalidChecksum: for a malformed pinned commit.
    """
    out = []
    for arg in args:
        ref, at, pin = arg.partition("@")
        if at:
            out.append(PullTarget(validate_ref_name(ref), parse_checksum(pin)))
        elif is_checksum(arg):
            out.append(PullTarget(None, Checksum(arg)))
        else:
            out.append(PullTarget(validate_ref_name(arg)))
    return out


def resolve_targets(
    targets: Iterable[PullTarget], summary: Summary | None, ref_files: Mapping[str, Checksum] | None = None
) -> dict[PullTarget, Checksum]:
    """Commit of every target: the pin, else the summary's entry, else ``refs/heads/REF``.

    Raises:
        RefNotFound: for a ref the remote does not have.
    """
    out: dict[PullTarget, Checksum] = {}
    # One index of the summary for all targets: a mirror of a summary with 150,000 refs asks
    # for every one of them (a scan per ref was quadratic).
    listed = {r.name: r.commit for r in summary.refs} if summary is not None else {}
    for t in targets:
        if t.commit is not None:
            out[t] = t.commit
            continue
        assert t.ref is not None
        commit = listed.get(t.ref)
        if commit is not None:
            out[t] = commit
        elif ref_files is not None and t.ref in ref_files:
            out[t] = ref_files[t.ref]
        else:
            raise RefNotFound(f"{t.ref} (not on the remote)")
    return out


class ActionKind(Enum):
    """Where an action's object comes from."""

    #: Ask the pull's source (the remote) for it.
    FETCH = "fetch"
    #: It is in the local repository already; read it to continue the walk (resume).
    READ_LOCAL = "read-local"


@dataclass(frozen=True, slots=True)
class Action:
    """Fetch an object from the remote, or read it from the local repository (``kind``)."""

    otype: ObjectType
    checksum: Checksum
    kind: ActionKind = ActionKind.FETCH
    #: For commits: how many more parents to walk (-1 = all).
    depth: int = 0
    #: For commitmeta: whether a 404 is acceptable (it always is, without signature policy).
    optional: bool = False
    #: A parent commit reached through ``depth``: a 404 ends the history instead of failing.
    parent: bool = False
    #: For dirtrees of a ``--subpath`` pull: the directory's path in the commit (``/a/b/``).
    path: str = "/"

    @property
    def local(self) -> bool:
        """Whether the object is read from the local repository."""
        return self.kind is ActionKind.READ_LOCAL


@dataclass
class PullPlan:
    """The walk state of one pull (mutable on purpose: it is the puller's bookkeeping)."""

    have: Have
    #: Whether a local commit is marked ``commitpartial`` (its tree may be incomplete).
    is_partial: Callable[[Checksum], bool] = lambda _c: False
    metadata_only: bool = False
    #: Treat a dirtree present locally as complete (all it references present too) instead of
    #: reading it to check. Only sound when the repository has no partial commit at all: every
    #: object then arrived through a pull or commit that completed, which publishes children
    #: before (or with) their parents.
    trust_local_trees: bool = False
    #: ``pull --subpath``: only these paths of each commit (absolute, no trailing ``/``), plus
    #: the directories leading to them; None: the whole tree. The commits stay partial.
    subpaths: tuple[str, ...] | None = None
    #: Commits whose tree is walked (these get their ``commitpartial`` marker cleared at the end).
    walked_commits: list[Checksum] = field(default_factory=list)
    #: Subpath pulls: dirtrees on their way, and every path each must be walked at when it
    #: arrives (one tree can sit at several paths, inside and outside the requested ones).
    _tree_paths: dict[Checksum, list[str]] = field(default_factory=dict)
    _trees_seen: set[tuple[Checksum, str]] = field(default_factory=set)
    _seen: set[tuple[ObjectType, Checksum]] = field(default_factory=set)
    fetch_metadata: int = 0
    fetch_content: int = 0

    def _fetch(self, otype: ObjectType, csum: Checksum, *, depth: int = 0, parent: bool = False) -> Action | None:
        key = (otype, csum)
        if key in self._seen:
            return None
        self._seen.add(key)
        if otype is ObjectType.FILE:
            if self.have(otype, csum):
                return None
            self.fetch_content += 1
            return Action(otype, csum)
        if otype is ObjectType.DIR_TREE and self.have(otype, csum):
            return None if self.trust_local_trees else Action(otype, csum, ActionKind.READ_LOCAL)
        if otype is ObjectType.DIR_META and self.have(otype, csum):
            return None
        self.fetch_metadata += 1
        return Action(otype, csum, depth=depth, parent=parent)

    def start_commit(self, csum: Checksum, *, depth: int, parent: bool = False) -> list[Action]:
        """Begin pulling ``csum`` (``parent``: reached through ``depth``).

        A complete local commit needs nothing but its detached metadata (which may have
        changed, e.g. a new signature) and, with ``depth``, its parents; a partial one is
        walked from its local object.
        """
        if (ObjectType.COMMIT, csum) in self._seen:
            return []
        out = [Action(ObjectType.COMMIT_META, csum, optional=True)]
        if self.have(ObjectType.COMMIT, csum):
            self._seen.add((ObjectType.COMMIT, csum))
            # A partial commit is walked for its missing objects; one pulled earlier with a
            # smaller --depth for its parents (as ostree: --depth=1 after --depth=0).
            if self.is_partial(csum) or depth != 0:
                out.append(Action(ObjectType.COMMIT, csum, ActionKind.READ_LOCAL, depth=depth))
            return out
        action = self._fetch(ObjectType.COMMIT, csum, depth=depth, parent=parent)
        if action is not None:
            out.append(action)
        return out

    def commit_arrived(self, csum: Checksum, commit: Commit, *, depth: int) -> list[Action]:
        """A verified commit (fetched or local): its tree, and its parent if ``depth`` allows."""
        out: list[Action] = []
        if not self.metadata_only:
            if self.subpaths is None:
                self.walked_commits.append(csum)
            for action in (
                self._fetch(ObjectType.DIR_META, commit.root_meta),
                self._tree(commit.root_tree, "/"),
            ):
                if action is not None:
                    out.append(action)
        if depth != 0 and commit.parent is not None:
            parent = commit.parent
            out.extend(self.start_commit(parent, depth=depth - 1 if depth > 0 else -1, parent=True))
        return out

    def _tree(self, csum: Checksum, path: str) -> Action | None:
        """The action for a dirtree at ``path`` (``/`` or ``/a/b/``)."""
        if self.subpaths is None:
            return self._fetch(ObjectType.DIR_TREE, csum)
        key = (csum, "" if self._inside(path) else path)  # a tree inside a subpath is walked whole, once
        if key in self._trees_seen:
            return None
        self._trees_seen.add(key)
        if self.have(ObjectType.DIR_TREE, csum):
            if self.trust_local_trees:
                return None
            return Action(ObjectType.DIR_TREE, csum, ActionKind.READ_LOCAL, path=path)
        waiting = self._tree_paths.get(csum)
        if waiting is not None:  # already on its way: walk it at this path too when it arrives
            waiting.append(path)
            return None
        self._tree_paths[csum] = [path]
        self.fetch_metadata += 1
        return Action(ObjectType.DIR_TREE, csum, path=path)

    def _inside(self, path: str) -> bool:
        """Whether ``path`` (a file, or a directory ending in ``/``) is within a requested subpath."""
        assert self.subpaths is not None
        p = path.rstrip("/") or "/"
        return any(s == "/" or p == s or p.startswith(s + "/") for s in self.subpaths)

    def _leads_to(self, dirpath: str) -> bool:
        """Whether the directory ``dirpath`` (``/a/``) is an ancestor of a requested subpath."""
        assert self.subpaths is not None
        return any(s.startswith(dirpath) for s in self.subpaths)

    def dirtree_arrived(self, tree: DirTree, *, checksum: Checksum | None = None, path: str = "/") -> list[Action]:
        """A verified dirtree (fetched or local): its missing files, subtrees and dirmetas.

        ``checksum`` and ``path`` matter for a subpath pull only: a fetched tree is walked at
        every path it was asked for; a local one at ``path``.
        """
        if self.subpaths is not None:
            paths = self._tree_paths.pop(checksum, [path]) if checksum is not None else [path]
            return [a for p in paths for a in self._walk_subpath(tree, p)]
        out: list[Action] = []
        for _name, csum in tree.files:
            a = self._fetch(ObjectType.FILE, csum)
            if a is not None:
                out.append(a)
        for _name, sub, meta in tree.dirs:
            for a2 in (self._fetch(ObjectType.DIR_META, meta), self._fetch(ObjectType.DIR_TREE, sub)):
                if a2 is not None:
                    out.append(a2)
        return out

    def _walk_subpath(self, tree: DirTree, path: str) -> list[Action]:
        """A dirtree at ``path`` of a subpath pull: files within a requested path, directories
        within one or leading to one (with their dirmetas), as ``ostree pull --subpath``."""
        out: list[Action] = []
        for name, csum in tree.files:
            if self._inside(path + name):
                a = self._fetch(ObjectType.FILE, csum)
                if a is not None:
                    out.append(a)
        for name, sub, meta in tree.dirs:
            child = f"{path}{name}/"
            if not (self._inside(child) or self._leads_to(child)):
                continue
            for a2 in (self._fetch(ObjectType.DIR_META, meta), self._tree(sub, child)):
                if a2 is not None:
                    out.append(a2)
        return out


def normalize_subpaths(subpaths: Iterable[str]) -> tuple[str, ...] | None:
    """``--subpath`` values as absolute paths without a trailing ``/`` (None when none given).

    Raises:
        FormatError: for a path with ``.`` or ``..`` components.
    """
    out: list[str] = []
    for raw in subpaths:
        parts = [p for p in raw.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise FormatError(f"invalid subpath {raw!r}: no '.' or '..' components")
        out.append("/" + "/".join(parts))
    return tuple(out) if out else None
