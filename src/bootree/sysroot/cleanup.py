"""Garbage collection of a sysroot: what no boot entry references any more goes away.

Layer: sysroot. Runs after every list write (as ostree's ``write_deployments`` does) and as
``bootree admin cleanup``. It deletes, in this order: the inactive ``boot/loader.X`` and
``ostree/boot.*`` directories and stale temporary links; deployment directories and ``.origin``
files that neither the boot list nor the staged state names; leftovers of interrupted deploys
(bootree's staging area, ``.tmp-`` kernel directories); kernel directories in ``boot/ostree``
that no deployment uses; then it regenerates the ``ostree/<B>/<S>/<i>`` refs and prunes the repo
(refs only, depth 0), as ostree does. It never touches a stateroot's ``var``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.sysroot import immutable, layout
from bootree.sysroot.swap import regenerate_refs
from bootree.sysroot.sysroot import Sysroot

__all__ = ["STAGING_DIR", "CleanupResult", "cleanup", "remove_deployment_dir"]

log = logging.getLogger(__name__)

#: Per-stateroot area where deploy prepares a deployment before renaming it into ``deploy/``.
#: Outside ``deploy/`` because ostree refuses to load a sysroot with odd names there.
STAGING_DIR = ".bootree-staging"


@dataclass(frozen=True, slots=True)
class CleanupResult:
    """What :func:`cleanup` removed."""

    deployments_removed: tuple[str, ...]
    boot_dirs_removed: tuple[str, ...]
    objects_pruned: int
    bytes_freed: int


def remove_deployment_dir(path: Path) -> None:
    """Remove a deployment tree, clearing the immutable bit on its root first."""
    if not os.path.lexists(path):
        return
    immutable.set_immutable(path, False)
    _fs.rmtree(path)


def _remove(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        _fs.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def cleanup(sysroot: Sysroot, *, prune_repo: bool = True) -> CleanupResult:
    """Remove everything the current list (plus the staged deployment) does not reference.

    The sysroot must be locked by the caller; it is reloaded first.

    Raises:
        BootConfigDamaged: when a damaged boot configuration lost deployments (nothing is
            deleted then: they are not garbage).
    """
    sysroot.load()
    sysroot.check_writable()
    root = sysroot.path
    loader_exists = os.path.lexists(root / layout.LOADER_LINK)
    bv, sv = sysroot.bootversion, sysroot.subbootversion
    if loader_exists:
        _remove(root / layout.loader_dir(1 - bv))
        _remove(root / layout.bootversion_link(1 - bv))
        for s in (0, 1):
            _remove(root / layout.bootlinks_dir(1 - bv, s))
        _remove(root / layout.bootlinks_dir(bv, 1 - sv))
    for stale in (root / layout.LOADER_TMP_LINK,):
        _remove(stale)
    ostree_dir = root / "ostree"
    for name in os.listdir(ostree_dir):
        if name.startswith(".boot.") or name.startswith(".tmp-"):
            _remove(ostree_dir / name)

    live = list(sysroot.all_deployments())
    keep = {(d.stateroot, d.name) for d in live}
    removed: list[str] = []
    for stateroot in sysroot.stateroots():
        _remove(root / layout.stateroot_dir(stateroot) / STAGING_DIR)
        ddir = root / layout.deployments_dir(stateroot)
        if not ddir.is_dir():
            continue
        for name in sorted(os.listdir(ddir)):
            base = name[: -len(".origin")] if name.endswith(".origin") else name
            if (stateroot, base) in keep:
                continue
            if name.endswith(".origin"):
                os.unlink(ddir / name)
            else:
                remove_deployment_dir(ddir / name)
                removed.append(base)
                log.info("deleted deployment %s", base)

    boot_keep = {layout.kernel_dir(d.stateroot, d.bootcsum).name for d in live}
    boot_removed: list[str] = []
    kdir = root / "boot/ostree"
    for name in sorted(os.listdir(kdir)) if kdir.is_dir() else []:
        if name not in boot_keep:
            _remove(kdir / name)
            boot_removed.append(name)
    for name in os.listdir(root / "boot") if (root / "boot").is_dir() else []:
        if name.startswith(".loader.") or name.startswith(".tmp-"):
            _remove(root / "boot" / name)

    pruned = freed = 0
    regenerate_refs(sysroot, live, bv, sv)
    if prune_repo:
        result = sysroot.repo.prune(refs_only=True, depth=0)
        pruned, freed = result.deleted, result.bytes_freed
    _fs.syncfs(root)
    return CleanupResult(tuple(removed), tuple(boot_removed), pruned, freed)
