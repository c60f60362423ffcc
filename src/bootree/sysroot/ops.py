"""Administrative operations on a sysroot besides deploy: init, list edits, pins, kargs, diffs.

Layer: sysroot. Each list-editing operation computes a new deployment list from the loaded
one and hands it to :func:`~bootree.sysroot.swap.write_deployments` (plan, then one atomic
swap), then runs :func:`~bootree.sysroot.cleanup.cleanup`, as ostree does. Operations that do
not change the list (pin, kargs edit-in-place) rewrite one file atomically. The caller holds
the sysroot lock for everything that writes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bootree import _fs
from bootree.errors import DeploymentNotFound, NoRollback, NotBooted, SysrootError
from bootree.format.bls import BlsEntry
from bootree.format.kargs import Kargs
from bootree.repo import Repo, RepoMode
from bootree.sysroot import layout
from bootree.sysroot.cleanup import CleanupResult, cleanup
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.etcmerge import EtcDiff, deployment_etc_diff
from bootree.sysroot.swap import SwapResult, write_deployments
from bootree.sysroot.sysroot import StagedState, Sysroot

__all__ = [
    "RollbackResult",
    "config_diff",
    "init_fs",
    "kargs_edit_in_place",
    "os_init",
    "rollback",
    "set_default",
    "set_pinned",
    "undeploy",
]

log = logging.getLogger(__name__)


def init_fs(path: Path, *, modern: bool = False) -> None:
    """``ostree admin init-fs``: the top-level directories and a ``bare`` repo in ``ostree/repo``.

    ``modern`` (ostree's ``--modern``) creates only ``boot/`` and ``ostree/``: the other
    top-level directories come from the deployments themselves.
    """
    os.makedirs(path, 0o755, exist_ok=True)
    dirs = (("boot", 0o755), ("dev", 0o755), ("home", 0o755), ("proc", 0o755),
            ("root", 0o700), ("run", 0o755), ("sys", 0o755), ("tmp", 0o1777))
    for name, mode in dirs[:1] if modern else dirs:
        d = path / name
        if not d.is_dir():
            os.mkdir(d)
            os.chmod(d, mode)
    os.makedirs(path / "ostree/deploy", 0o755, exist_ok=True)
    Repo.init(path / layout.REPO, mode=RepoMode.BARE)


def os_init(sysroot: Sysroot, stateroot: str) -> bool:
    """``ostree admin os-init``: create a stateroot and its shared ``/var``; returns whether new.

    An existing stateroot is left alone (its ``/var`` is never recreated).
    """
    layout.validate_stateroot(stateroot)
    sdir = sysroot.path / layout.stateroot_dir(stateroot)
    new = not (sdir / "var").exists()
    os.makedirs(sdir / "deploy", 0o755, exist_ok=True)
    var = sdir / "var"
    if new:
        os.makedirs(var, 0o755, exist_ok=True)
        for sub in ("lib", "log"):
            os.makedirs(var / sub, 0o755, exist_ok=True)
        if not (var / "tmp").exists():
            os.mkdir(var / "tmp")
            os.chmod(var / "tmp", 0o1777)
        for name, target in (("lock", "../run/lock"), ("run", "../run")):
            if not os.path.lexists(var / name):
                os.symlink(target, var / name)
        _fs.fsync_dir(var)
    return new


def _write(sysroot: Sysroot, new_list: list[Deployment], *, do_cleanup: bool = True) -> tuple[SwapResult, CleanupResult | None]:
    _, swap = write_deployments(sysroot, new_list)
    return swap, (cleanup(sysroot) if do_cleanup else None)


def undeploy(sysroot: Sysroot, index: int) -> tuple[Deployment, SwapResult | None, CleanupResult]:
    """``ostree admin undeploy INDEX``: drop one deployment (pinned too, as 2022.7) and clean up.

    Raises:
        DeploymentNotFound: for a bad index.
        SysrootError: when asked to remove the booted deployment.
    """
    target = sysroot.find(index)
    if target.same(sysroot.booted):
        raise SysrootError(f"cannot undeploy the booted deployment {target.name}")
    if target.staged:
        os.unlink(sysroot.staged_path)
        sysroot.load()
        return target, None, cleanup(sysroot)
    swap, result = _write(sysroot, [d for d in sysroot.deployments if not d.same(target)])
    assert result is not None
    return target, swap, result


def set_default(sysroot: Sysroot, index: int) -> SwapResult | None:
    """``ostree admin set-default INDEX``: move a deployment to the front; ``None`` if already there.

    Raises:
        DeploymentNotFound: for a bad index (or a staged deployment).
    """
    target = sysroot.find(index)
    if target.staged:
        raise SysrootError("cannot make the staged deployment the default; finalize it instead")
    if sysroot.deployments and sysroot.deployments[0].same(target):
        return None
    rest = [d for d in sysroot.deployments if not d.same(target)]
    swap, _ = _write(sysroot, [target, *rest], do_cleanup=False)
    return swap


def set_pinned(sysroot: Sysroot, index: int, pinned: bool) -> Deployment:
    """Pin or unpin by rewriting the ``.origin`` atomically (no list write, as ostree).

    Raises:
        DeploymentNotFound: for a bad index.
        SysrootError: for a staged deployment (ostree refuses too).
    """
    target = sysroot.find(index)
    if target.staged:
        raise SysrootError("cannot pin a staged deployment")
    from bootree.sysroot.deployment import Origin

    origin = (target.origin or Origin("")).with_pinned(pinned)
    _fs.write_atomic(sysroot.path / target.origin_path, origin.text.encode())
    sysroot.load()
    return target.with_(origin=origin)


def set_origin_remote(sysroot: Sysroot, index: int | None, remote: str, branch: str | None = None) -> Deployment:
    """``admin set-origin``: make a deployment follow ``REMOTE:BRANCH`` (default: its current ref).

    ``index`` ``None`` is the booted deployment. The ``.origin`` is rewritten atomically with
    only that refspec, as ostree writes a new origin; the remote itself is the caller's to add.

    Raises:
        NotBooted: ``index`` is ``None`` and nothing is booted.
        DeploymentNotFound: for a bad index.
        SysrootError: the deployment's origin has no refspec and no ``branch`` is given.
    """
    from bootree.sysroot.deployment import Origin

    if index is None:
        if sysroot.booted is None:
            raise NotBooted("Not currently booted into an OSTree system")
        target = sysroot.booted
    else:
        target = sysroot.find(index)
    ref = branch or (target.refspec or "").rpartition(":")[2]
    if not ref:
        raise SysrootError(f"deployment {target.name} has no origin refspec; name the branch")
    origin = Origin.for_refspec(f"{remote}:{ref}")
    _fs.write_atomic(sysroot.path / target.origin_path, origin.text.encode())
    sysroot.load()
    return target.with_(origin=origin)


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """What :func:`rollback` did: whether it reverted a queued rollback, and the swap."""

    reverted: bool
    swap: SwapResult

    @property
    def message(self) -> str:
        """bootc's wording."""
        if self.reverted:
            return "notice: Reverting queued rollback state\nNext boot: current deployment"
        return "Next boot: rollback deployment"


def rollback(sysroot: Sysroot) -> RollbackResult:
    """bootc's ``rollback``: swap the booted and the rollback deployment in the boot order.

    The rollback deployment is the first one of the booted stateroot that is neither staged
    nor booted. If it is already ahead of the booted one (a rollback is queued), the booted one
    goes back to the front instead. Everything else keeps its relative order, a staged
    deployment is dropped, and no /etc merge happens: each deployment keeps its own /etc.

    Raises:
        NotBooted: on a sysroot that is not booted.
        NoRollback: when there is no other deployment of the booted stateroot.
    """
    booted = sysroot.booted
    if booted is None:
        raise NotBooted("not booted into a deployment: rollback needs a booted system",
                        hint="use 'bootree admin set-default INDEX' on a sysroot that is not booted")
    deps = list(sysroot.deployments)
    target = next((d for d in deps if d.stateroot == booted.stateroot and not d.same(booted)), None)
    if target is None:
        raise NoRollback("No rollback available")
    b_idx = next(i for i, d in enumerate(deps) if d.same(booted))
    t_idx = next(i for i, d in enumerate(deps) if d.same(target))
    queued = t_idx < b_idx
    first, second = (booted, target) if queued else (target, booted)
    rest = [d for d in deps if not d.same(booted) and not d.same(target)]
    swap, _ = _write(sysroot, [first, second, *rest])
    return RollbackResult(queued, swap)


def kargs_edit_in_place(sysroot: Sysroot, *, append_if_missing: tuple[str, ...] = (),
                        delete_if_present: tuple[str, ...] = ()) -> int:
    """``ostree admin kargs edit-in-place``: edit every deployment's kargs without a swap.

    Each live BLS entry is rewritten atomically in the current ``loader.B/entries``; a staged
    deployment's saved kargs are updated. Returns how many entries changed.
    """
    changed = 0
    entries = sysroot.path / layout.entries_dir(sysroot.bootversion)
    count = len(sysroot.deployments)
    for i, d in enumerate(sysroot.deployments):
        new = _edit(d.kargs, append_if_missing, delete_if_present)
        if new == d.kargs:
            continue
        fname = entries / layout.entry_filename(count - i, d.stateroot)
        entry = BlsEntry.parse(fname.read_text("utf-8")).set("options", str(new))
        _fs.write_atomic(fname, entry.to_text().encode())
        changed += 1
    state = sysroot.staged_state
    if state is not None:
        new_k = _edit(Kargs.from_argv(state.kargs), append_if_missing, delete_if_present)
        if tuple(new_k) != state.kargs:
            _fs.write_atomic(sysroot.staged_path, StagedState(state.target, state.merge, tuple(new_k),
                                                              state.overlay_initrds).to_bytes())
            changed += 1
    sysroot.load()
    return changed


def set_kargs_in_place(sysroot: Sysroot, index: int, kargs: Kargs) -> None:
    """``ostree admin instutil set-kargs``: make ``kargs`` the kernel arguments of deployment
    ``index`` by rewriting its live BLS entry atomically (no new deployment, no swap).

    The deployment's own ``ostree=`` argument is kept (it is what boots it).

    Raises:
        DeploymentNotFound: for an index that is not in the list.
    """
    if not 0 <= index < len(sysroot.deployments):
        raise DeploymentNotFound(f"at index {index}")
    d = sysroot.deployments[index]
    keep = [a for a in d.kargs if a.startswith("ostree=")]
    new = kargs.without("ostree").append_all(keep)
    entries = sysroot.path / layout.entries_dir(sysroot.bootversion)
    fname = entries / layout.entry_filename(len(sysroot.deployments) - index, d.stateroot)
    entry = BlsEntry.parse(fname.read_text("utf-8")).set("options", str(new))
    _fs.write_atomic(fname, entry.to_text().encode())
    sysroot.load()


def _edit(k: Kargs, append: tuple[str, ...], delete: tuple[str, ...]) -> Kargs:
    for a in append:
        k = k.append_if_missing(a)
    for a in delete:
        k = k.delete_if_present(a)
    return k


def config_diff(sysroot: Sysroot, stateroot: str | None) -> EtcDiff:
    """``ostree admin config-diff``: local /etc changes of the merge deployment.

    Raises:
        NotBooted: without ``stateroot`` on a sysroot that is not booted (ostree's rule).
        SysrootError: when the stateroot has no deployment.
    """
    if stateroot is None and sysroot.booted is None:
        raise NotBooted("Not currently booted into an OSTree system and no --os= argument given")
    merge = sysroot.merge_deployment(stateroot)
    if merge is None:
        raise SysrootError(f"no deployment for stateroot {stateroot}")
    return deployment_etc_diff(sysroot.deployment_dir(merge))
