"""Server side of the protocol: regenerate a repository's ``summary`` (``summary -u``).

Layer: pull (it reads a repository and writes the files a static server publishes). The bytes
come from :class:`bootree.format.summary.Summary`, so a client (ours or ostree) sees exactly what
``ostree summary -u`` would publish: local branches only (remote refs are excluded), the repo
mode as written in its config, static-delta superblock digests, and per-TO delta indexes under
``delta-indexes/``. As with ostree, a regenerated summary invalidates ``summary.sig``, which is
deleted (sign again after regenerating).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Iterable

from bootree import _fs
from bootree.delta import list_deltas
from bootree.delta.bootree_mode import ROOT as BOOTREE_ROOT
from bootree.delta.bootree_mode import SUMMARY_KEY as BOOTREE_SUMMARY_KEY
from bootree.errors import InvalidChecksum
from bootree.format import gvariant
from bootree.format.checksum import Checksum, from_raw
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType
from bootree.format.summary import Summary
from bootree.repo import Repo

__all__ = ["delta_b64", "update_summary"]

log = logging.getLogger(__name__)


def delta_b64(csum: Checksum) -> str:
    """ostree's modified base64 of a checksum (``/`` -> ``_``, no padding), used in delta paths."""
    return base64.b64encode(bytes.fromhex(csum)).decode("ascii").rstrip("=").replace("/", "_")


def _b64_to_hex(s: str) -> Checksum:
    raw = base64.b64decode(s.replace("_", "/") + "=" * (-len(s) % 4))
    return from_raw(raw)


def _find_deltas(repo: Repo) -> dict[str, bytes]:
    """Delta name (hex ``FROM-TO`` or ``TO``) -> SHA-256 of its superblock."""
    out: dict[str, bytes] = {}
    root = repo.path / "deltas"
    if not root.is_dir():
        return out
    for sb in sorted(root.glob("*/*/superblock")):
        prefix, rest = sb.parent.parent.name, sb.parent.name
        try:
            if "-" in rest:
                frm, to = rest.split("-", 1)
                name = f"{_b64_to_hex(prefix + frm)}-{_b64_to_hex(to)}"
            else:
                name = _b64_to_hex(prefix + rest)
        except (ValueError, InvalidChecksum):
            log.warning("ignoring unrecognised delta directory %s", sb.parent)
            continue
        out[name] = hashlib.sha256(sb.read_bytes()).digest()
    return out


def _write_delta_indexes(repo: Repo, deltas: dict[str, bytes]) -> None:
    by_to: dict[str, list[str]] = {}
    for name in deltas:
        by_to.setdefault(name.rpartition("-")[2], []).append(name)
    for to, names in by_to.items():
        b64 = delta_b64(Checksum(to))
        path = repo.path / "delta-indexes" / b64[:2] / f"{b64[2:]}.index"
        _fs.makedirs(path.parent)
        data = gvariant.encode(
            "a{sv}",
            [
                (
                    "ostree.static-deltas",
                    Variant("a{sv}", [(n, Variant("ay", deltas[n])) for n in sorted(names)]),
                )
            ],
        )
        _fs.write_atomic(path, data, fsync=repo.fsync)


def update_summary(
    repo: Repo, *, extra_metadata: Iterable[tuple[str, Variant]] = (), now: int | None = None
) -> Summary:
    """Regenerate ``summary`` (and ``delta-indexes/``) from the repository's branches.

    Raises:
        ObjectMissing: if a branch points at a commit that is not in the repository.
    """
    refs: dict[str, tuple[Checksum, bytes]] = {}
    for name, csum in repo.list_refs().items():
        if ":" in name:
            continue  # remote refs are not published
        refs[name] = (csum, repo.load_metadata(ObjectType.COMMIT, csum))
    deltas = {} if repo.config.get_bool("core", "no-deltas-in-summary", False) else _find_deltas(repo)
    own = {str(d.name): d.digest for d in list_deltas(repo, root=BOOTREE_ROOT)}
    if own and not repo.config.get_bool("core", "no-deltas-in-summary", False):
        # bootree's own deltas, under a key ostree ignores; bootree clients prefer them.
        entries = [(n, Variant("ay", own[n])) for n in sorted(own)]
        extra_metadata = [*extra_metadata, (BOOTREE_SUMMARY_KEY, Variant("a{sv}", entries))]
    summary = Summary.build(
        refs,
        mode=repo.config.get("core", "mode", "bare") or "bare",
        last_modified=int(time.time()) if now is None else now,
        tombstone_commits=repo.config.get_bool("core", "tombstone-commits", False),
        deltas=deltas,
        extra_metadata=extra_metadata,
    )
    if deltas:
        _write_delta_indexes(repo, _find_deltas(repo))
    _fs.write_atomic(repo.path / "summary", summary.to_bytes(), fsync=repo.fsync)
    (repo.path / "summary.sig").unlink(missing_ok=True)
    return summary
