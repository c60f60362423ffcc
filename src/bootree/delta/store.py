"""Where static deltas live in a repository: ``deltas/``, ``delta-indexes/``, and publishing them.

Layer: delta (services). A delta directory ``deltas/XX/YYY…[-ZZZ…]`` holds ``superblock`` and
its parts ``0``, ``1``, …; it appears whole or not at all: it is assembled in a temporary sibling
directory (every file fsynced) and renamed into place, replacing an older delta of the same name
by a second rename. ``delta-indexes/XX/YYY….index`` lists, per ``to`` commit, every delta ending
there with its superblock digest (libostree's ``static-delta reindex`` and ``summary -u``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.errors import DeltaNotFound, InvalidChecksum
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.delta import (
    DeltaName,
    Superblock,
    checksum_from_b64,
    delta_index_relpath,
    encode_delta_index,
)
from bootree.repo import Repo

__all__ = [
    "StoredDelta",
    "delete_delta",
    "list_deltas",
    "list_indexes",
    "prune_deltas",
    "publish_delta_dir",
    "read_superblock",
    "reindex",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredDelta:
    """A delta found under ``deltas/``: its name, directory and superblock digest."""

    name: DeltaName
    path: Path
    digest: bytes


def list_deltas(repo: Repo, *, root: str = "deltas") -> list[StoredDelta]:
    """Every delta in the repository with a superblock, sorted by name.

    ``root`` is ``deltas`` (libostree's) or ``bootree-deltas`` (bootree's own format).
    """
    out: list[StoredDelta] = []
    top = repo.path / root
    if not top.is_dir():
        return out
    for sb in top.glob("*/*/superblock"):
        prefix, rest = sb.parent.parent.name, sb.parent.name
        if rest.startswith("."):
            continue  # a delta being assembled
        try:
            name = DeltaName.from_relpath(prefix, rest)
        except InvalidChecksum:
            log.warning("ignoring unrecognised delta directory %s", sb.parent)
            continue
        out.append(StoredDelta(name, sb.parent, hashlib.sha256(sb.read_bytes()).digest()))
    return sorted(out, key=lambda d: str(d.name))


def delta_path(repo: Repo, name: DeltaName, root: str = "deltas") -> Path:
    """Where delta ``name`` lives under ``root``."""
    return repo.path / root / name.relpath.removeprefix("deltas/")


def find_delta(repo: Repo, name: DeltaName, *, root: str = "deltas") -> Path:
    """The directory of delta ``name``.

    Raises:
        DeltaNotFound: if it has no superblock.
    """
    path = delta_path(repo, name, root)
    if not (path / "superblock").is_file():
        raise DeltaNotFound(str(name))
    return path


def read_superblock(repo: Repo, name: DeltaName, *, root: str = "deltas") -> tuple[bytes, Superblock]:
    """The superblock file of delta ``name`` and its parsed value.

    Raises:
        DeltaNotFound: if absent.
        DeltaFormatError: if it does not parse.
    """
    data = (find_delta(repo, name, root=root) / "superblock").read_bytes()
    return data, Superblock.from_bytes(data)


def delete_delta(repo: Repo, name: DeltaName, *, root: str = "deltas") -> None:
    """Remove delta ``name`` (renamed aside first, so no half-deleted delta is ever listed).

    Raises:
        DeltaNotFound: if absent.
    """
    path = find_delta(repo, name, root=root)
    aside = path.parent / _fs.temp_name(f".{path.name}.del-")
    os.rename(path, aside)
    _fs.rmtree(aside)
    if repo.fsync:
        _fs.fsync_dir(path.parent)


def publish_delta_dir(repo: Repo, name: DeltaName, files: Iterable[tuple[str, Path]], *, root: str = "deltas") -> Path:
    """Move finished delta files into ``deltas/…`` as one directory, atomically.

    ``files`` are ``(file name, staged path)`` pairs on the repository's file system; the
    superblock should come last. Each is fsynced, then the directory is renamed into place.
    """
    final = delta_path(repo, name, root)
    _fs.makedirs(final.parent)
    staging = final.parent / _fs.temp_name(f".{final.name}.new-")
    staging.mkdir(mode=0o755)
    try:
        for fname, src in files:
            fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fchmod(fd, 0o644)
                if repo.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(src, staging / fname)
        if repo.fsync:
            _fs.fsync_dir(staging)
        old = None
        if final.exists():
            old = final.parent / _fs.temp_name(f".{final.name}.old-")
            os.rename(final, old)
        os.rename(staging, final)
        if repo.fsync:
            _fs.fsync_dir(final.parent)
        if old is not None:
            _fs.rmtree(old)
    except BaseException:
        with contextlib.suppress(OSError):
            _fs.rmtree(staging)
        raise
    return final


def reindex(repo: Repo, to: Checksum | None = None) -> dict[Checksum, dict[str, bytes]]:
    """Rewrite ``delta-indexes/`` from ``deltas/`` (only ``to``'s index if given).

    Indexes whose deltas are all gone are removed. Returns each ``to`` commit's index.
    """
    by_to: dict[Checksum, dict[str, bytes]] = {}
    for d in list_deltas(repo):
        if to is None or d.name.to_commit == to:
            by_to.setdefault(d.name.to_commit, {})[str(d.name)] = d.digest
    for commit, deltas in by_to.items():
        path = repo.path / delta_index_relpath(commit)
        _fs.makedirs(path.parent)
        _fs.write_atomic(path, encode_delta_index(deltas), fsync=repo.fsync)
    for commit in list_indexes(repo):
        if commit not in by_to and (to is None or commit == to):
            (repo.path / delta_index_relpath(commit)).unlink(missing_ok=True)
    return by_to


def list_indexes(repo: Repo) -> list[Checksum]:
    """The ``to`` commits that have an index file."""
    out = []
    root = repo.path / "delta-indexes"
    for f in sorted(root.glob("*/*.index")) if root.is_dir() else []:
        try:
            out.append(checksum_from_b64(f.parent.name + f.name[: -len(".index")]))
        except InvalidChecksum:
            log.warning("ignoring unrecognised delta index %s", f)
    return out


def prune_deltas(repo: Repo, *, to: Checksum | None = None) -> list[DeltaName]:
    """Delete static deltas as ostree's prune does: those ending at ``to``, or (without it)
    those whose ``to`` commit is no longer in the repository. Returns the deleted names."""
    gone: list[DeltaName] = []
    for d in list_deltas(repo):
        target = d.name.to_commit
        if (target == to) if to is not None else not repo.store.has(ObjectType.COMMIT, target):
            delete_delta(repo, d.name)
            gone.append(d.name)
    return gone
