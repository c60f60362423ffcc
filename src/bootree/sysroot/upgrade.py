"""A local ``upgrade``: deploy what the booted deployment's origin ref points at now.

Layer: sysroot. Fetching is not this layer's job (it never imports ``pull``); this resolves the
origin refspec in the sysroot's own repository, after whatever pulled into it. What it adds is
the boot-assessment rule of issue 5: a commit that already failed its health checks on this
machine (:mod:`bootree.sysroot.assessment`) is not deployed again unless the caller says so,
otherwise every ``upgrade`` after an automatic rollback would queue the same broken update.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootree.errors import NotBooted, SysrootError
from bootree.format.checksum import Checksum
from bootree.sysroot import assessment
from bootree.sysroot.deploy import DeployOptions, DeployResult, check_downgrade, deploy, stage
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.sysroot import Sysroot

__all__ = ["ENDOFLIFE_REBASE", "UpgradeResult", "check_downgrade", "endoflife_rebase", "upgrade", "upgrade_base"]

#: Commit metadata naming the ref that replaces an end-of-life branch (ostree's key).
ENDOFLIFE_REBASE = "ostree.endoflife-rebase"


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What :func:`upgrade` found and did (``deployed`` is ``None`` when nothing was done)."""

    checksum: Checksum
    deployed: DeployResult | None
    skipped_failed: bool = False
    up_to_date: bool = False

    @property
    def message(self) -> str:
        """One line for the CLI."""
        if self.up_to_date:
            return "No update available."
        if self.skipped_failed:
            return (f"Not deploying {self.checksum}: it failed its health checks on this system "
                    "(use --allow-failed to deploy it anyway)")
        return f"Deployed {self.checksum}"


def upgrade_base(sysroot: Sysroot, stateroot: str | None = None, *, configured: bool = True) -> Deployment:
    """The deployment an upgrade starts from: the booted one, else the first (of ``stateroot``).

    Raises:
        NotBooted: when there is no such deployment.
        SysrootError: when its origin says updates are configured elsewhere (``unconfigured-state``),
            unless ``configured`` is false (``switch`` names its new origin itself).
    """
    if sysroot.booted is not None and stateroot in (None, sysroot.booted.stateroot):
        base: Deployment | None = sysroot.booted
    else:
        base = next((d for d in sysroot.deployments if stateroot in (None, d.stateroot)), None)
    if base is None:
        raise NotBooted("no deployment to upgrade" + (f" in stateroot {stateroot}" if stateroot else ""))
    origin = base.origin if configured else None
    unconfigured = origin.get("origin", "unconfigured-state") if origin is not None else None
    if unconfigured:
        raise SysrootError(unconfigured)
    return base


def endoflife_rebase(sysroot: Sysroot, refspec: str) -> str | None:
    """The refspec an upgrade of ``refspec`` moves to, if its commit ends the branch; else ``None``.

    A publisher retires a branch by committing to it with ``ostree.endoflife-rebase=NEWREF``
    (ostree's rule): an upgrade then follows ``NEWREF`` of the same remote from now on. The
    local commit of ``refspec`` decides, so the caller pulls first, then pulls the new ref.

    Raises:
        RefNotFound: ``refspec`` does not resolve locally.
    """
    csum = sysroot.repo.resolve_rev(refspec)
    new_ref = sysroot.repo.read_commit(csum).get(ENDOFLIFE_REBASE)
    if not isinstance(new_ref, str) or not new_ref:
        return None
    remote, sep, _ = refspec.rpartition(":")
    return f"{remote}:{new_ref}" if sep else new_ref


def upgrade(
    sysroot: Sysroot,
    *,
    allow_failed: bool = False,
    stage_it: bool = False,
    stateroot: str | None = None,
    commit: Checksum | None = None,
    allow_downgrade: bool = False,
) -> UpgradeResult:
    """Deploy the commit the booted (or default) deployment's refspec resolves to, if it is new.

    ``commit`` deploys that commit instead (ostree's ``--override-commit``); without
    ``allow_downgrade`` a commit older than the deployed one is refused, as ostree refuses it.
    A refspec whose commit is an end-of-life marker is replaced by the one it names
    (:func:`endoflife_rebase`), in the new deployment's origin too. The sysroot must be locked.

    Raises:
        NotBooted: when there is no deployment to upgrade from.
        SysrootError: when that deployment has no origin refspec.
        RefNotFound: when the refspec does not resolve locally.
        DowngradeError: the ref points at an older commit than the deployment's, without
            ``allow_downgrade``.
    """
    base = upgrade_base(sysroot, stateroot)
    refspec = base.refspec
    if not refspec:
        raise SysrootError(f"deployment {base.name} has no origin refspec to upgrade from")
    origin = base.origin.without_transient() if base.origin is not None else None
    rebased = endoflife_rebase(sysroot, refspec) if commit is None else None
    if rebased is not None:
        refspec = rebased
        origin = origin.with_refspec(rebased) if origin is not None else None
    csum = commit if commit is not None else sysroot.repo.resolve_rev(refspec)
    if csum == base.csum or (sysroot.staged is not None and sysroot.staged.csum == csum):
        return UpgradeResult(csum, None, up_to_date=True)
    if not allow_failed and csum in assessment.failed_commits(sysroot, base.stateroot):
        return UpgradeResult(csum, None, skipped_failed=True)
    if not allow_downgrade:
        check_downgrade(sysroot, csum, base.stateroot)
    if stage_it:
        res = stage(sysroot, csum, stateroot=base.stateroot, origin=origin, opts=DeployOptions())
    else:
        res = deploy(sysroot, csum, stateroot=base.stateroot, origin=origin, opts=DeployOptions())
    return UpgradeResult(csum, res)
