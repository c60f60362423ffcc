"""A repository's ``summary``: build it from the branches, write it atomically, read it back.

Layer: repo. :mod:`bootree.format.summary` is the codec; this module is the repository
operation around it, used by ``summary -u`` / ``summary --view`` and by a mirroring pull. The
bytes are what ``ostree summary -u`` would publish: local branches (under the repository's
collection ID, if it has one), refs of other collections (mirrors, remotes with a collection ID)
in the collection map, no other remote refs, the repo mode as written in its config, static-delta superblock digests, and per-TO
delta indexes under ``delta-indexes/``. As with ostree, a regenerated summary invalidates
``summary.sig``, which is deleted (sign again after regenerating).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterable

from bootree import _fs
from bootree.errors import CorruptSummary, FormatError, InvalidChecksum, SummaryNotFound
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.delta import (
    BOOTREE_DELTAS_ROOT,
    BOOTREE_SUMMARY_KEY,
    DeltaName,
    checksum_to_b64,
    delta_index_relpath,
    encode_delta_index,
)
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit, DirMeta, DirTree
from bootree.format.summary import Summary
from bootree.repo.collections import COLLECTION_BINDING_KEY, REF_BINDING_KEY, list_collection_refs
from bootree.repo.repo import Repo

__all__ = [
    "METADATA_REF",
    "build_summary",
    "delta_b64",
    "read_summary",
    "update_summary",
    "write_metadata_commit",
    "write_summary",
]

log = logging.getLogger(__name__)


def delta_b64(csum: Checksum) -> str:
    """ostree's modified base64 of a checksum (``/`` -> ``_``, no padding), used in delta paths."""
    return checksum_to_b64(csum)


def _find_deltas(repo: Repo, top: str = "deltas") -> dict[str, bytes]:
    """Delta name (hex ``FROM-TO`` or ``TO``) -> SHA-256 of its superblock, under ``top``."""
    out: dict[str, bytes] = {}
    root = repo.path / top
    if not root.is_dir():
        return out
    for sb in sorted(root.glob("*/*/superblock")):
        prefix, rest = sb.parent.parent.name, sb.parent.name
        if rest.startswith("."):
            continue  # a delta being assembled or removed
        try:
            name = DeltaName.from_relpath(prefix, rest)
        except InvalidChecksum:
            log.warning("ignoring unrecognised delta directory %s", sb.parent)
            continue
        out[str(name)] = hashlib.sha256(sb.read_bytes()).digest()
    return out


def _write_delta_indexes(repo: Repo, deltas: dict[str, bytes]) -> None:
    by_to: dict[str, dict[str, bytes]] = {}
    for name, digest in deltas.items():
        by_to.setdefault(name.rpartition("-")[2], {})[name] = digest
    for to, entries in by_to.items():
        path = repo.path / delta_index_relpath(Checksum(to))
        _fs.makedirs(path.parent)
        _fs.write_atomic(path, encode_delta_index(entries), fsync=repo.fsync)


def build_summary(
    repo: Repo, *, extra_metadata: Iterable[tuple[str, Variant]] = (), now: int | None = None
) -> Summary:
    """The summary of the repository's branches, without writing anything.

    Raises:
        ObjectMissing: if a branch points at a commit that is not in the repository.
    """
    refs: dict[str, tuple[Checksum, bytes]] = {}
    for name, csum in repo.list_refs().items():
        if ":" in name:
            continue  # remote refs are not published (unless they have a collection ID: below)
        refs[name] = (csum, repo.load_metadata(ObjectType.COMMIT, csum))
    others: dict[str, dict[str, tuple[Checksum, bytes]]] = {}
    for cref, csum in list_collection_refs(repo.refs, repo.config).items():
        if cref.collection_id != repo.collection_id:
            others.setdefault(cref.collection_id, {})[cref.ref] = (csum, repo.load_metadata(ObjectType.COMMIT, csum))
    no_deltas = repo.config.get_bool("core", "no-deltas-in-summary", False)
    deltas = {} if no_deltas else _find_deltas(repo)
    own = {} if no_deltas else _find_deltas(repo, BOOTREE_DELTAS_ROOT)
    if own:  # bootree's own delta format, under a key ostree ignores (bootree clients prefer it)
        entries = [(n, Variant("ay", own[n])) for n in sorted(own)]
        extra_metadata = [*extra_metadata, (BOOTREE_SUMMARY_KEY, Variant("a{sv}", entries))]
    return Summary.build(
        refs,
        mode=repo.config.get("core", "mode", "bare") or "bare",
        last_modified=int(time.time()) if now is None else now,
        tombstone_commits=repo.config.get_bool("core", "tombstone-commits", False),
        deltas=deltas,
        extra_metadata=extra_metadata,
        collection_id=repo.collection_id,
        collection_map=others,
    )


def update_summary(
    repo: Repo, *, extra_metadata: Iterable[tuple[str, Variant]] = (), now: int | None = None
) -> Summary:
    """Regenerate ``summary`` (and ``delta-indexes/``) from the repository's branches.

    Raises:
        ObjectMissing: if a branch points at a commit that is not in the repository.
    """
    extra_metadata = list(extra_metadata)
    if repo.collection_id is not None:
        write_metadata_commit(repo, repo.collection_id, extra_metadata, now=now)
    summary = build_summary(repo, extra_metadata=extra_metadata, now=now)
    if summary.static_deltas:
        _write_delta_indexes(repo, summary.static_deltas)
    write_summary(repo, summary.to_bytes(), None)
    return summary


#: The branch a repository with a collection ID publishes its summary metadata on, as ostree.
METADATA_REF = "ostree-metadata"


def write_metadata_commit(
    repo: Repo, collection_id: str, metadata: Iterable[tuple[str, Variant]], *, now: int | None = None
) -> Checksum:
    """Commit the summary's extra ``metadata`` on the ``ostree-metadata`` branch (an empty tree,
    bound to that ref and to ``collection_id``; the previous one is its parent), as ostree's
    ``summary -u`` does in a repository with a collection ID, so that peers can fetch the
    metadata as a signed commit."""
    parent = repo.refs.get(METADATA_REF)
    meta = [
        (COLLECTION_BINDING_KEY, Variant("s", collection_id)),
        (REF_BINDING_KEY, Variant("as", [METADATA_REF])),
        *metadata,
    ]
    with repo.transaction() as txn:
        root = txn.write_dirtree(DirTree())
        dmeta = txn.write_dirmeta(DirMeta(0, 0, stat.S_IFDIR | 0o755, ()))
        commit = Commit(
            root_tree=root, root_meta=dmeta, parent=parent, subject="", body="",
            timestamp=int(time.time()) if now is None else now, metadata=tuple(meta),
        )
        csum = txn.write_commit(commit)
    repo.refs.set(METADATA_REF, csum, expected=parent, fsync=repo.fsync)
    return csum


def write_summary(repo: Repo, data: bytes, signature: bytes | None) -> Summary:
    """Install ``data`` as the repository's summary, with ``signature`` or none (a mirror).

    The bytes are parsed first, so a repository never publishes a summary it cannot read; the
    summary and its signature are each replaced atomically, and a stale ``summary.sig`` never
    stays beside a new summary.

    Raises:
        CorruptSummary: if ``data`` does not parse.
    """
    try:
        summary = Summary.from_bytes(data)
    except FormatError as e:
        raise CorruptSummary("summary", str(e)) from e
    sig = repo.path / "summary.sig"
    sig.unlink(missing_ok=True)
    _fs.write_atomic(repo.path / "summary", data, fsync=repo.fsync)
    if signature is not None:
        _fs.write_atomic(sig, signature, fsync=repo.fsync)
    return summary


def read_summary(repo: Repo) -> Summary:
    """The repository's own ``summary``.

    Raises:
        SummaryNotFound: if there is none.
        CorruptSummary: if it does not parse.
    """
    path = repo.path / "summary"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SummaryNotFound(repo.path) from None
    except OSError as e:
        raise CorruptSummary(os.fspath(path), e.strerror or str(e)) from e
    try:
        return Summary.from_bytes(data)
    except FormatError as e:
        raise CorruptSummary(os.fspath(path), str(e)) from e


def refs_changed(repo: Repo, *, committed: bool = False) -> None:
    """Regenerate the summary after a ref change when the repository asks for it, as ostree:
    ``core.commit-update-summary`` after a commit, ``core.auto-update-summary`` after any ref
    change (when a summary exists). Commands call this after they move refs."""
    auto = repo.config.get_bool("core", "auto-update-summary", False) and (repo.path / "summary").exists()
    if auto or (committed and repo.config.get_bool("core", "commit-update-summary", False)):
        update_summary(repo)
