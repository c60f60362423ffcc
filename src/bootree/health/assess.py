"""One boot's assessment: notice a fallback, run the checks, bless or ask for a reboot.

Layer: health. Called once per boot on the booted system (``bootree health run``, from the
image's boot sequence, where ``systemd-bless-boot.service`` would be). The steps and why:

1. **Fallback.** If a deployment ahead of the booted one in the boot list has a *bad* ESP entry
   (``+0-N``: the loader gave up on it), the loader fell back. Record it as failed (so ``status``
   and ``upgrade`` know); once this boot proved healthy (step 3), make the rollback permanent as
   ``rpm-ostree rollback`` would: the booted deployment goes first in the list and the ESP mirror
   gives it the highest entry.
2. **Checks.** Run required and wanted checks (:mod:`bootree.health.checks`).
3. **Verdict.** All required checks passed: rename the entry named by ``LoaderBootCountPath`` to
   drop its counter (``systemd-bless-boot good``) and record the deployment good. Otherwise record
   the failed checks and return ``reboot``: the loader counts the next attempt down and, when the
   tries are used up, boots the previous entry by itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from bootree.errors import NotBooted
from bootree.health import efivars
from bootree.health.checks import DEFAULT_TIMEOUT, CheckResult, discover, run_checks
from bootree.sysroot import assessment, esp
from bootree.sysroot.assessment import DeploymentAssessment
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.swap import write_deployments
from bootree.sysroot.sysroot import Sysroot

__all__ = ["AssessResult", "assess_boot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AssessResult:
    """What :func:`assess_boot` saw and did."""

    booted: Deployment
    entry_selected: str | None
    count_path: str | None
    results: tuple[CheckResult, ...]
    blessed: str | None
    fell_back_from: tuple[DeploymentAssessment, ...]
    rollback_made_default: bool

    @property
    def healthy(self) -> bool:
        """No required check failed."""
        return not any(r.blocking for r in self.results)

    @property
    def reboot(self) -> bool:
        """Whether the caller should reboot: unhealthy while the loader is still counting."""
        return not self.healthy and bool(self.count_path)


def _detect_fallback(sysroot: Sysroot, booted: Deployment, record: assessment.AssessmentRecord
                     ) -> tuple[assessment.AssessmentRecord, list[DeploymentAssessment]]:
    states = assessment.esp_states(sysroot)
    failed = []
    for d in sysroot.deployments:
        if d.same(booted):
            break
        name = states.get((d.stateroot, d.name))
        if name is None or name.state is not esp.CountState.BAD:
            continue
        old = record.get(d)
        a = DeploymentAssessment(
            d.stateroot, d.name, d.csum, "failed", old.failed_checks if old else (),
            max(old.boots if old else 0, name.done),
            (f"required health checks failed ({', '.join(old.failed_checks)})" if old and old.failed_checks
             else "no boot passed the health checks")
            + f" in {name.done} boot attempt{'' if name.done == 1 else 's'}; the boot loader fell back to {booted.name}",
        )
        record = record.with_(a)
        failed.append(a)
    return record, failed


def assess_boot(sysroot: Sysroot, *, root: Path = Path("/"), efivars_dir: Path = efivars.EFIVARS,
                timeout: float = DEFAULT_TIMEOUT) -> AssessResult:
    """Assess the current boot of ``sysroot`` (which must be locked and booted).

    Raises:
        NotBooted: when no deployment of the sysroot is booted.
        SysrootError: when the record, the list write or the ESP rename fails.
    """
    booted = sysroot.booted
    if booted is None:
        raise NotBooted("not booted into a deployment: nothing to assess")
    selected = efivars.read_loader_var("LoaderEntrySelected", efivars=efivars_dir)
    count_path = efivars.read_loader_var("LoaderBootCountPath", efivars=efivars_dir)
    record = assessment.load(sysroot)
    record, failed = _detect_fallback(sysroot, booted, record)
    made_default = False
    if failed:
        record = assessment.AssessmentRecord(record.deployments, {
            "from": [a.deployment for a in failed], "to": booted.name, "time": time.time()})
        assessment.save(sysroot, record)
        log.warning("fell back from %s to %s", ", ".join(a.deployment for a in failed), booted.name)
    results = tuple(run_checks(discover(root), timeout=timeout))
    healthy = not any(r.blocking for r in results)
    old = record.get(booted)
    boots = (old.boots if old else 0) + 1
    blessed = None
    if healthy:
        esp_path = esp.esp_dir(sysroot)
        if esp_path is not None:
            blessed = esp.bless(esp_path, count_path)
        record = record.with_(DeploymentAssessment(booted.stateroot, booted.name, booted.csum, "good", (), boots))
    else:
        bad = tuple(r.check.name for r in results if r.blocking)
        record = record.with_(DeploymentAssessment(
            booted.stateroot, booted.name, booted.csum, "failed", bad, boots,
            f"required health checks failed: {', '.join(bad)}"))
    assessment.save(sysroot, record)
    if failed and healthy and not sysroot.deployments[0].same(booted):
        # Make the fallback permanent only once the fallback target proved healthy (and after
        # blessing, so the fresh ESP entry the reorder writes carries the good state).
        rest = [d for d in sysroot.deployments if not d.same(booted)]
        write_deployments(sysroot, [booted, *rest])
        made_default = True
    return AssessResult(booted, selected, count_path, results, blessed, tuple(failed), made_default)
