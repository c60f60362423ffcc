"""Deploying a commit: checkout, /etc, origin, kernel; then the list write, or staging.

Layer: sysroot. The shape is "prepare, then commit": :func:`prepare_deployment` builds the new
deployment in ``ostree/deploy/<os>/.bootree-staging/`` (hardlink checkout, ``usr/etc`` → ``etc``
copy, the three-way /etc merge, the ``.origin``), renames it to ``deploy/<csum>.<serial>`` and
hands back a :class:`Deployment` that nothing references yet. Only
:func:`~bootree.sysroot.swap.write_deployments` makes it bootable, with its single rename of
``boot/loader``. If anything fails before that rename, what was created is removed (a
SIGKILL leaves it for the next :func:`~bootree.sysroot.cleanup.cleanup`, which every deploy
runs first): the sysroot is as it was.

Retention follows ``ostree_sysroot_simple_write_deployment`` (§9.5): the new deployment, then
every old one that is pinned, of another stateroot, booted, the merge deployment, or kept by
``retain``/``retain_pending``/``retain_rollback``. Staging (bootc semantics, §1.6 of
bootc-oci.md) prepares the tree and origin now and leaves the /etc merge and the list write to
:func:`finalize_staged`, which the shutdown path (or the boot simulator) runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.errors import DowngradeError, NotBooted, StaterootNotFound, SysrootError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.kargs import Kargs
from bootree.repo import CheckoutMode
from bootree.sysroot import _faults, immutable, layout
from bootree.sysroot import composefs as cfs
from bootree.sysroot.bootloader import find_kernel
from bootree.sysroot.cleanup import STAGING_DIR, cleanup, remove_deployment_dir
from bootree.sysroot.deployment import Deployment, Origin
from bootree.sysroot.etcmerge import EtcDiff, merge_deployment_etc, prepare_etc
from bootree.sysroot.swap import SwapResult, write_deployments
from bootree.sysroot.sysroot import StagedState, Sysroot

__all__ = [
    "DeployOptions",
    "DeployResult",
    "check_downgrade",
    "deploy",
    "finalize_staged",
    "prepare_deployment",
    "retained_list",
    "stage",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeployOptions:
    """Options of ``admin deploy`` (ostree's names)."""

    kargs: tuple[str, ...] = ()
    """``--karg``: replace these arguments (on top of the merge deployment's kargs)."""
    kargs_append: tuple[str, ...] = ()
    """``--karg-append``: append these."""
    kargs_delete: tuple[str, ...] = ()
    """``--karg-delete``: delete these."""
    no_merge: bool = False
    """``--no-merge``: neither /etc nor kargs come from the current deployment."""
    not_as_default: bool = False
    """``--not-as-default``: insert after the booted/merge deployment instead of first."""
    retain: bool = False
    retain_pending: bool = False
    retain_rollback: bool = False
    base_kargs: str | None = None
    """Start from this command line instead of the merge deployment's (``--karg-proc-cmdline``
    passes the running kernel's, ``--karg-none`` an empty one)."""


@dataclass(frozen=True, slots=True)
class DeployResult:
    """The new deployment, the /etc diff carried over (``None`` when none was merged), the swap."""

    deployment: Deployment
    etc: EtcDiff | None
    swap: SwapResult | None
    relabeled_var: bool = False
    """The stateroot's ``var`` got ostree's first-time relabel stamp (``var/.ostree-selabeled``)."""


def _kargs_for(merge: Deployment | None, opts: DeployOptions) -> Kargs:
    """ostree's rule: start from the merge deployment's options, then replace/append/delete."""
    if opts.base_kargs is not None:
        base = Kargs.parse(opts.base_kargs)
    else:
        base = merge.kargs if merge is not None else Kargs()
    if not (opts.kargs or opts.kargs_append or opts.kargs_delete):
        return base
    k = base.replace_all(opts.kargs).append_all(opts.kargs_append)
    for arg in opts.kargs_delete:
        k = k.delete(arg)
    return k


def _next_serial(sysroot: Sysroot, stateroot: str, csum: Checksum) -> int:
    serials = [d.deployserial for d in sysroot.all_deployments() if d.stateroot == stateroot and d.csum == csum]
    return max(serials) + 1 if serials else 0


def prepare_deployment(
    sysroot: Sysroot,
    csum: Checksum,
    *,
    stateroot: str,
    origin: Origin | None,
    kargs: Kargs,
    merge: Deployment | None,
    merge_etc_now: bool = True,
) -> tuple[Deployment, EtcDiff | None, bool]:
    """Build a deployment directory for ``csum`` that no boot entry references yet.

    The sysroot must be locked. On any error everything created here is removed again.

    Raises:
        StaterootNotFound: if ``stateroot`` was not initialized (``os-init``).
        EtcMergeConflict: see :mod:`bootree.sysroot.etcmerge` (nothing is left behind).
        KernelNotFound: for a tree without a kernel.
        ObjectMissing, RepoError: for a missing or damaged commit.
    """
    layout.validate_stateroot(stateroot)
    sdir = sysroot.path / layout.stateroot_dir(stateroot)
    if not (sdir / "var").is_dir():
        raise StaterootNotFound(stateroot)
    commit = sysroot.repo.read_commit(csum)
    serial = _next_serial(sysroot, stateroot, csum)
    name = layout.deploy_name(csum, serial)
    final = sysroot.path / layout.deploy_dir(stateroot, csum, serial)
    final_origin = sysroot.path / layout.origin_path(stateroot, csum, serial)
    staging = sdir / STAGING_DIR
    os.makedirs(staging, 0o700, exist_ok=True)
    os.makedirs(sysroot.path / layout.deployments_dir(stateroot), 0o755, exist_ok=True)
    work = staging / _fs.temp_name(f"{name}.")
    renamed = False
    try:
        # A leftover under the final name (a deploy killed after its rename) is unreferenced.
        remove_deployment_dir(final)
        sysroot.repo.checkout(csum, work, mode=CheckoutMode.HARDLINK, whiteouts=True)  # as ostree's deploy
        _faults.checkpoint("after-checkout")
        kl = find_kernel(work)
        with _fs.Tree(work) as tree:
            prepare_etc(tree)
        etc_diff: EtcDiff | None = None
        if merge is not None and merge_etc_now:
            etc_diff = merge_deployment_etc(sysroot.deployment_dir(merge), work)
        cfs.write_deployment_image(sysroot.repo, csum, commit, work)  # .ostree.cfs if enabled
        var = sdir / "var"
        _clear_updated(work / "etc", var)
        relabeled = not os.path.lexists(var / ".ostree-selabeled")
        if relabeled:
            # ostree's one-time relabel stamp; written once so both tools agree the var is labelled.
            _fs.write_atomic(var / ".ostree-selabeled", b"", mode=0o644)
        if origin is not None:
            _fs.write_atomic(staging / f"{work.name}.origin", origin.text.encode())
        _fs.syncfs(work)
        _fs.rename(work, final)  # before chattr +i: an immutable directory cannot change parent
        renamed = True
        if not sysroot.mutable_deployments:
            immutable.set_immutable(final, True)
        if origin is not None:
            _fs.rename(staging / f"{work.name}.origin", final_origin)
        _fs.fsync_dir(final.parent)
    except BaseException:
        remove_deployment_dir(work)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging / f"{work.name}.origin")
        if renamed:
            remove_deployment_dir(final)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(final_origin)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(staging)  # only when empty: a concurrent deploy cannot exist (we hold the lock)
    dep = Deployment(
        stateroot=stateroot,
        csum=csum,
        deployserial=serial,
        bootcsum=kl.bootcsum,
        kargs=kargs,
        origin=origin,
        version=commit.version,
    )
    log.info("prepared deployment %s/%s", stateroot, name)
    return dep, etc_diff, relabeled


def retained_list(
    sysroot: Sysroot,
    new: Deployment,
    merge: Deployment | None,
    opts: DeployOptions,
) -> list[Deployment]:
    """ostree_sysroot_simple_write_deployment's new list (staged deployments excluded)."""
    booted = sysroot.booted
    retain_pending = opts.retain or opts.retain_pending
    retain_rollback = opts.retain or opts.retain_rollback
    out: list[Deployment] = []
    added = False
    if not opts.not_as_default:
        out.append(new)
        added = True
    before_booted = before_merge = True
    for d in sysroot.deployments:
        is_booted, is_merge = d.same(booted), d.same(merge)
        if is_booted:
            before_booted = False
        if is_merge:
            before_merge = False
        crossed = (not before_booted) if booted is not None else (not before_merge)
        if (
            opts.retain
            or d.pinned
            or d.stateroot != new.stateroot
            or (retain_pending and not crossed)
            or is_booted
            or is_merge
            or (retain_rollback and crossed)
        ):
            out.append(d)
        if not added and crossed:
            out.append(new)
            added = True
    if not added:
        out.append(new)
    return out


def _referenced(sysroot: Sysroot, dep: Deployment) -> bool:
    """Whether the boot list on disk (re-read now) holds ``dep``; ``True`` when unreadable.

    A list write can fail after its commit point (a flush after the ``boot/loader`` rename):
    the new entries are then in force, so the in-memory list is stale. A deployment is only
    discarded when the sysroot, read again, shows that nothing boots it.
    """
    try:
        sysroot.load()
    except Exception:  # cannot account for it: never delete what might boot
        log.warning("cannot re-read the sysroot after a failed write; keeping %s", dep.name)
        return True
    return any(d.same(dep) for d in sysroot.deployments)


def _discard(sysroot: Sysroot, dep: Deployment) -> None:
    remove_deployment_dir(sysroot.deployment_dir(dep))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sysroot.path / dep.origin_path)


def _clear_updated(etc: Path, var: Path) -> None:
    """Remove ``etc/.updated`` and ``var/.updated`` as ostree does for a new deployment, so that
    systemd's ``ConditionNeedsUpdate=`` units (ldconfig, hwdb, ...) run once on its first boot.

    Each directory is opened without following a symlink: a tree whose ``/etc`` is a link must
    not make the deploy delete a file outside the deployment."""
    for d in (etc, var):
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # missing, not a directory, or a symlink: nothing of ours to clear
            continue
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(".updated", dir_fd=fd)
        finally:
            os.close(fd)


def check_downgrade(sysroot: Sysroot, csum: Checksum, stateroot: str) -> None:
    """Refuse to deploy a commit older than the booted deployment's (or, unbooted, the default one's).

    Here, not in :mod:`bootree.sysroot.upgrade`: every ``admin deploy`` runs it, and the upgrade
    module loads the boot-assessment records that a deploy does not need.

    A mirror that replays an old, validly signed commit must not roll a machine back to a
    vulnerable version: rpm-ostree refuses this unless ``--allow-downgrade``. Only deployments of
    the same stateroot are compared.

    Raises:
        DowngradeError: the commit's timestamp is older.
    """
    same = [d for d in sysroot.deployments if d.stateroot == stateroot]
    booted = sysroot.booted
    base = booted if booted is not None and booted.stateroot == stateroot else (same[0] if same else None)
    if base is None or base.csum == csum:
        return
    new_time = sysroot.repo.read_commit(csum).timestamp
    if not sysroot.repo.has_object(ObjectType.COMMIT, base.csum):
        return
    base_time = sysroot.repo.read_commit(base.csum).timestamp
    if new_time < base_time:
        raise DowngradeError(f"deployment {base.name}", csum, new_time, base.csum, base_time)


def deploy(
    sysroot: Sysroot,
    csum: Checksum,
    *,
    stateroot: str,
    origin: Origin | None,
    opts: DeployOptions = DeployOptions(),
    do_cleanup: bool = True,
) -> DeployResult:
    """``ostree admin deploy``: prepare, then write the retained list in one atomic swap.

    The sysroot must be locked.

    Raises:
        See :func:`prepare_deployment`; errors of the list write leave the old entries in force
        and the new deployment removed.
    """
    if do_cleanup:
        cleanup(sysroot, prune_repo=False)
    merge = None if opts.no_merge else sysroot.merge_deployment(stateroot)
    kargs = _kargs_for(merge, opts)
    dep, etc_diff, relabeled = prepare_deployment(
        sysroot, csum, stateroot=stateroot, origin=origin, kargs=kargs, merge=merge
    )
    try:
        written, swap = write_deployments(sysroot, retained_list(sysroot, dep, merge, opts))
    except BaseException:
        if not _referenced(sysroot, dep):
            _discard(sysroot, dep)
        raise
    if do_cleanup:
        cleanup(sysroot)
    new = next(d for d in written if d.same(dep))
    return DeployResult(new, etc_diff, swap, relabeled)


def stage(
    sysroot: Sysroot,
    csum: Checksum,
    *,
    stateroot: str,
    origin: Origin | None,
    opts: DeployOptions = DeployOptions(),
) -> DeployResult:
    """``deploy --stage``: check out and write the origin now; merge /etc and swap at shutdown.

    Only on a booted sysroot. A previously staged deployment is replaced.

    Raises:
        NotBooted: if no deployment is booted.
        SysrootError: for ``--not-as-default`` or ``--retain*`` (as ostree 2022.7).
    """
    if sysroot.booted is None:
        raise NotBooted("Cannot stage deployment: Not currently booted into an OSTree system",
                        hint="boot the sysroot first ('bootree admin boot'), or deploy without --stage")
    if opts.not_as_default or opts.retain or opts.retain_pending or opts.retain_rollback:
        raise SysrootError("--stage cannot be combined with --not-as-default or --retain options")
    old_staged = sysroot.staged
    merge = None if opts.no_merge else sysroot.merge_deployment(stateroot)
    kargs = _kargs_for(merge, opts)
    dep, _, relabeled = prepare_deployment(
        sysroot, csum, stateroot=stateroot, origin=origin, kargs=kargs, merge=merge, merge_etc_now=False
    )
    dep = dep.with_(staged=True)
    state = StagedState(
        target=(dep.stateroot, dep.name, dep.bootcsum),
        merge=(merge.stateroot, merge.name, merge.bootcsum) if merge else None,
        kargs=tuple(dep.kargs),
    )
    try:
        os.makedirs(sysroot.staged_path.parent, 0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sysroot.staged_locked_path)
        _fs.write_atomic(sysroot.staged_path, state.to_bytes())
    except BaseException:
        _discard(sysroot, dep)
        raise
    if old_staged is not None and not old_staged.same(dep):
        _discard(sysroot, old_staged)
    sysroot.load()
    return DeployResult(dep, None, None, relabeled)


def finalize_staged(sysroot: Sysroot) -> DeployResult | None:
    """The shutdown half of staging: /etc merge from the merge deployment, then the swap.

    Returns ``None`` when nothing is staged or finalization is locked. The sysroot must be
    locked.

    Raises:
        EtcMergeConflict: the staged deployment is left as it was, the old entries in force.
    """
    staged, state = sysroot.staged, sysroot.staged_state
    if staged is None or state is None:
        return None
    if sysroot.staged_locked_path.exists():
        log.info("staged deployment is locked; not finalizing")
        return None
    merge = None
    if state.merge is not None:
        m_os, m_name, _ = state.merge
        merge = next((d for d in sysroot.deployments if d.stateroot == m_os and d.name == m_name), None)
    etc_diff = None
    if merge is not None:
        etc_diff = merge_deployment_etc(sysroot.deployment_dir(merge), sysroot.deployment_dir(staged))
        var = sysroot.path / layout.stateroot_dir(staged.stateroot) / "var"
        _clear_updated(sysroot.deployment_dir(staged) / "etc", var)
    written, swap = write_deployments(
        sysroot, retained_list(sysroot, staged.with_(staged=False), merge, DeployOptions())
    )
    cleanup(sysroot)
    new = next(d for d in written if d.same(staged))
    return DeployResult(new, etc_diff, swap)

