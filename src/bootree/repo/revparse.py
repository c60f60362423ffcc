"""Revision syntax: what a user may type where ostree takes a REV, resolved to a commit.

Layer: repo. Takes the refs and the object store it reads, not the whole repository, so the
lookup order is readable in one place and testable on its own: ``REV^`` (the parent), a full
checksum, a ref (``remote:ref``, ``remote/ref``), a bare ref found under any remote (as
ostree's ``refs/remotes/*/REF`` fallback), a collection ref of a mirror, and last a unique
abbreviated commit checksum.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from bootree.errors import BootreeError, RefNotFound
from bootree.format.checksum import Checksum, is_checksum
from bootree.format.objects import ObjectType
from bootree.format.refspec import RefSpec, parse_refspec
from bootree.repo.objectstore import DiskObjectStore
from bootree.repo.refs import RefStore

#: The shortest abbreviated checksum accepted (as ostree: a prefix of at least 4 hex digits).
MIN_ABBREV = 4


def resolve(
    rev: str,
    *,
    refs: RefStore,
    store: DiskObjectStore,
    parent_of: Callable[[Checksum], Checksum | None],
    remotes_dir: Path,
    allow_missing: bool,
) -> Checksum | None:
    """The commit ``rev`` names; ``None`` for nothing when ``allow_missing``.

    ``parent_of`` reads a commit's parent (``REV^``); ``remotes_dir`` is ``refs/remotes``.

    Raises:
        RefNotFound: when nothing matches and not ``allow_missing``, and for an abbreviated
            checksum that several commits share (always).
        InvalidRefName: for a malformed ref name.
    """

    def again(r: str) -> Checksum | None:
        return resolve(r, refs=refs, store=store, parent_of=parent_of, remotes_dir=remotes_dir,
                       allow_missing=allow_missing)

    if rev.endswith("^"):
        base = again(rev[:-1])
        if base is None:
            return None
        parent = parent_of(base)
        if parent is None and not allow_missing:
            raise RefNotFound(rev)
        return parent
    if is_checksum(rev):
        return Checksum(rev)
    spec = parse_refspec(rev)
    found = refs.get(spec)
    if found is None and spec.remote is None:
        found = _bare_ref(spec.ref, refs, remotes_dir)
    if found is None and spec.remote is None:
        found = next((c for (_cid, name), c in refs.list_mirrors().items() if name == spec.ref), None)
    if found is None and spec.remote is None and MIN_ABBREV <= len(rev) < 64 and all(c in "0123456789abcdef" for c in rev):
        matches = [c for t, c in store.iter_objects() if t is ObjectType.COMMIT and c.startswith(rev)]
        if len(matches) > 1:
            raise RefNotFound(f"{rev} (ambiguous: {len(matches)} commits match)")
        found = matches[0] if matches else None
    if found is None and not allow_missing:
        raise RefNotFound(rev)
    return found


def _bare_ref(ref: str, refs: RefStore, remotes_dir: Path) -> Checksum | None:
    """A ref typed without ``remote:``: ``remote/ref`` names a remote's ref, and a bare REF
    names ``refs/remotes/*/REF`` of the first remote (sorted) that has it, as with ostree."""
    if "/" in ref:
        remote, _, name = ref.partition("/")
        with contextlib.suppress(BootreeError):
            found = refs.get(f"{remote}:{name}")
            if found is not None:
                return found
    for remote in sorted(os.listdir(remotes_dir)) if remotes_dir.is_dir() else []:
        with contextlib.suppress(BootreeError):
            found = refs.get(RefSpec(remote, ref))
            if found is not None:
                return found
    return None
