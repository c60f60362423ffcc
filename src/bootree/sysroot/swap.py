"""Writing a new deployment list: the bootversion / subbootversion swap, bootree's commit point.

Layer: sysroot. This is where a deployment list becomes what the machine boots, and it must be
atomic: a crash at any moment leaves either the old list or the new one in force, never a mix
(``ostree-format.md`` §9.4, libostree 2022.7's algorithm).

* If the list has the same length and every entry keeps its boot configuration (bootcsum,
  kargs without ``ostree=``, overlay initrds, commit version), the entries themselves are still
  right and only the symlink farm changes: build ``ostree/boot.B.(1-S)``, then atomically
  replace the symlink ``ostree/boot.B`` (the *subbootversion* swap).
* Otherwise, with newB = 1 − B: rebuild ``boot/loader.newB/entries`` from scratch, install
  kernels, write the BLS files, build ``ostree/boot.newB.S'`` and point ``ostree/boot.newB`` at it
  (all of this is invisible: the live entries still say ``boot.B``), syncfs, then
  ``rename(boot/loader.tmp → boot/loader)``: **the one atomic step**. Before it the old entries
  are in force; after it, the new ones.

Afterwards the repo refs ``ostree/<B>/<S>/<i>`` (the GC roots of deployed commits) are
regenerated and the mtime of ``ostree/deploy`` is bumped, as ostree does. Last, when the sysroot
has an ESP configured, :func:`bootree.sysroot.esp.sync_sysroot` mirrors the new list onto it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree._fs.freeze import freeze_thaw
from bootree.sysroot import _faults, bootconfig, debug, esp, layout
from bootree.sysroot.bootloader import find_kernel, install_kernel, make_entry
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.sysroot import Sysroot

__all__ = ["SwapResult", "assign_bootserials", "bootconfig_equal", "regenerate_refs", "write_deployments"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SwapResult:
    """What :func:`write_deployments` did (the CLI prints ostree's one-line summary from it)."""

    bootversion: int
    subbootversion: int
    bootconfig_swap: bool
    count_change: int

    @property
    def message(self) -> str:
        """``Bootloader updated; bootconfig swap: yes; bootversion: boot.1.1, deployment count change: 1``."""
        swap = "yes" if self.bootconfig_swap else "no"
        return (
            f"Bootloader updated; bootconfig swap: {swap}; bootversion: boot.{self.bootversion}.{self.subbootversion}, "
            f"deployment count change: {self.count_change}"
        )


def assign_bootserials(deployments: Sequence[Deployment]) -> list[Deployment]:
    """Number deployments sharing a bootcsum 0, 1, ... in list order (the farm's last component)."""
    seen: dict[str, int] = {}
    out = []
    for d in deployments:
        n = seen.get(d.bootcsum, 0)
        seen[d.bootcsum] = n + 1
        out.append(d.with_(bootserial=n, staged=False))
    return out


def bootconfig_equal(a: Deployment, b: Deployment) -> bool:
    """Whether two deployments get the same BLS entry at the same position."""
    return (
        a.bootcsum == b.bootcsum
        and a.kargs.without("ostree") == b.kargs.without("ostree")
        and a.overlay_initrds == b.overlay_initrds
        and a.version == b.version
    )


def _symlink_atomic(target: str, link: Path) -> None:
    tmp = link.parent / _fs.temp_name(f".{link.name}.")
    os.symlink(target, tmp)
    _fs.rename(tmp, link)


def _build_bootlinks(sysroot: Sysroot, bootversion: int, deployments: Sequence[Deployment]) -> int:
    """Create ``ostree/boot.B.S'`` for the new list; returns S'."""
    new_sub = 1 - sysroot.read_subbootversion(bootversion)
    farm = sysroot.path / layout.bootlinks_dir(bootversion, new_sub)
    _fs.rmtree(farm)
    os.makedirs(farm, 0o755)
    for d in deployments:
        link = sysroot.path / layout.bootlink_path(bootversion, new_sub, d.stateroot, d.bootcsum, d.bootserial)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(layout.bootlink_target(d.stateroot, d.csum, d.deployserial), link)
    return new_sub


_DEPLOYMENT_REF = re.compile(r"ostree/[01]/[01]/[0-9]+")


def regenerate_refs(sysroot: Sysroot, deployments: Sequence[Deployment], bootversion: int, subbootversion: int) -> None:
    """Make ``ostree/<B>/<S>/<i>`` refs exactly the list's commits (ostree's GC roots).

    As ostree, in one repository transaction (so ``OSTREE_REPO_TEST_ERROR=pre-commit`` fails it:
    ``bootree.repo.testhooks``); each ref is still written atomically on its own.
    """
    wanted = {layout.deployment_ref(bootversion, subbootversion, i): d.csum for i, d in enumerate(deployments)}
    current = sysroot.repo.list_refs("ostree")
    with sysroot.repo.transaction() as txn:
        for ref in current:
            # Only the deployment refs ostree/<0|1>/<0|1>/<i>: ostree/container/* (the container
            # store's layers and images, bootc-oci.md §2.1) are not the sysroot's to delete.
            if ":" not in ref and ref not in wanted and _DEPLOYMENT_REF.fullmatch(ref):
                txn.set_ref(ref, None)
        for ref, csum in wanted.items():
            if current.get(ref) != csum:
                txn.set_ref(ref, csum)


def write_deployments(sysroot: Sysroot, new_list: Sequence[Deployment]) -> tuple[list[Deployment], SwapResult]:
    """Make ``new_list`` the boot list (index 0 = default) in one atomic step.

    The sysroot must be locked by the caller. Staged deployments are not part of a boot list:
    writing any list drops the staged state (as ostree does); the caller decides whether the
    staged deployment is in ``new_list``. Returns the list with bootserials assigned and what
    was done.

    Raises:
        SysrootError, KernelNotFound, OSError: before the commit point, with the old entries
            still in force.
        BootConfigDamaged: when the loaded configuration was damaged and lost deployments
            that ``new_list`` does not name (writing would orphan them; nothing is written).
    """
    sysroot.check_writable(new_list)
    path = sysroot.path
    old = sysroot.deployments
    deps = assign_bootserials(new_list)
    same = len(deps) == len(old) and all(bootconfig_equal(a, b) for a, b in zip(deps, old, strict=True))
    same = same and os.path.lexists(path / layout.LOADER_LINK)
    if same:
        bv = sysroot.bootversion
        sub = _build_bootlinks(sysroot, bv, deps)
        _fs.syncfs(path)
        freeze_thaw(path / "boot", test_watchdog=debug.enabled("test-fifreeze"))
        _faults.checkpoint("before-swap")
        _symlink_atomic(f"boot.{bv}.{sub}", path / layout.bootversion_link(bv))
        _fs.fsync_dir(path / "ostree")
        _faults.checkpoint("after-swap")
    else:
        bv = 1 - sysroot.bootversion
        entries = path / layout.entries_dir(bv)
        _fs.rmtree(path / layout.loader_dir(bv))
        os.makedirs(entries, 0o755)
        show_stateroot = len({d.stateroot for d in deps}) > 1
        written = []
        for i, d in enumerate(deps):
            root = sysroot.deployment_dir(d)
            kl = find_kernel(root, known_bootcsum=d.bootcsum)
            install_kernel(path, root, d.stateroot, kl)
            entry = make_entry(
                path, d, index=i, count=len(deps), bootversion=bv, show_stateroot=show_stateroot, kl=kl
            )
            _fs.write_atomic(entries / layout.entry_filename(len(deps) - i, d.stateroot), entry.to_text().encode(), fsync=False)
            written.append(entry)
        loader = bootconfig.choose(path, sysroot.repo)
        if loader is not None:  # syslinux/U-Boot/GRUB file of the new version, swapped with it
            bootconfig.write_config(path, loader, bv, written, sysroot.deployment_dir(deps[0]) if deps else None)
        sub = _build_bootlinks(sysroot, bv, deps)
        _symlink_atomic(f"boot.{bv}.{sub}", path / layout.bootversion_link(bv))
        if not os.path.lexists(path / layout.BOOT_LINK):
            os.symlink(".", path / layout.BOOT_LINK)
        _fs.syncfs(path)
        # /boot's own file system, journal included (what GRUB reads), as ostree's full sync.
        freeze_thaw(path / "boot", test_watchdog=debug.enabled("test-fifreeze"))
        _faults.checkpoint("before-swap")
        tmp = path / layout.LOADER_TMP_LINK
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(f"loader.{bv}", tmp)
        _fs.rename(tmp, path / layout.LOADER_LINK)  # the commit point
        _fs.fsync_dir(path / "boot")
        _faults.checkpoint("after-swap")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sysroot.staged_path)
    regenerate_refs(sysroot, deps, bv, sub)
    now = time.time()
    os.utime(path / "ostree/deploy", (now, now))
    result = SwapResult(bv, sub, not same, len(deps) - len(old))
    log.info("%s", result.message)
    sysroot.load()
    # The ESP mirror (boot counting, systemd-boot) follows the list; see bootree.sysroot.esp.
    esp.sync_sysroot(sysroot)
    return deps, result

