"""Boot assessment records: which deployments failed their health checks, and what the ESP says.

Layer: sysroot. The health runner (:mod:`bootree.health`) decides whether a boot is good; this
module keeps the durable record of its verdicts, so that ``status`` can tell the user after a
fallback that the newer deployment failed, and ``upgrade`` can refuse to deploy a commit that
already failed. The record is one JSON file, ``ostree/bootree/boot-assessment.json`` in the
sysroot (beside ostree's own state, on the same filesystem as the deployments), replaced
atomically on every change. Its keys are deployment names ``<csum>.<serial>`` per stateroot;
each value says ``state`` (``good``/``failed``), the commit, the failed checks, how many boots
were attempted and when.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from bootree import _fs
from bootree.errors import SysrootError
from bootree.sysroot import esp as esp_mod
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.sysroot import Sysroot

__all__ = ["RECORD", "AssessmentRecord", "DeploymentAssessment", "esp_states", "failed_commits", "load", "save"]

log = logging.getLogger(__name__)

RECORD = PurePosixPath("ostree/bootree/boot-assessment.json")


@dataclass(frozen=True, slots=True)
class DeploymentAssessment:
    """The verdict on one deployment."""

    stateroot: str
    deployment: str
    checksum: str
    state: str
    """``good`` (its checks passed and the entry was blessed) or ``failed``."""
    failed_checks: tuple[str, ...] = ()
    boots: int = 0
    """Boots of this deployment that ran the checks."""
    reason: str = ""
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """camelCase keys, as bootc's status uses."""
        return {"stateroot": self.stateroot, "deployment": self.deployment, "checksum": self.checksum,
                "state": self.state, "failedChecks": list(self.failed_checks), "boots": self.boots,
                "reason": self.reason, "time": self.time}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeploymentAssessment:
        """Parse one value of the record."""
        return cls(str(d["stateroot"]), str(d["deployment"]), str(d["checksum"]), str(d["state"]),
                   tuple(str(c) for c in d.get("failedChecks", [])), int(d.get("boots", 0)),
                   str(d.get("reason", "")), float(d.get("time", 0.0)))


@dataclass(frozen=True, slots=True)
class AssessmentRecord:
    """All verdicts, plus the last fallback the health runner saw."""

    deployments: tuple[DeploymentAssessment, ...] = ()
    last_fallback: dict[str, Any] | None = None

    def get(self, d: Deployment) -> DeploymentAssessment | None:
        """The verdict on ``d``, if any."""
        return next((a for a in self.deployments if a.stateroot == d.stateroot and a.deployment == d.name), None)

    def with_(self, a: DeploymentAssessment) -> AssessmentRecord:
        """A copy with ``a`` replacing the verdict on the same deployment."""
        rest = tuple(x for x in self.deployments if (x.stateroot, x.deployment) != (a.stateroot, a.deployment))
        return AssessmentRecord((*rest, a), self.last_fallback)

    def to_json(self) -> dict[str, Any]:
        """The file's JSON."""
        return {"deployments": [a.to_json() for a in self.deployments], "lastFallback": self.last_fallback}


def load(sysroot: Sysroot) -> AssessmentRecord:
    """Read the record (empty when there is none).

    Raises:
        SysrootError: for a file that is not the expected JSON.
    """
    try:
        raw = json.loads((sysroot.path / RECORD).read_text("utf-8"))
        return AssessmentRecord(tuple(DeploymentAssessment.from_json(d) for d in raw.get("deployments", [])),
                                raw.get("lastFallback"))
    except FileNotFoundError:
        return AssessmentRecord()
    except (ValueError, KeyError, TypeError) as e:
        raise SysrootError(f"malformed boot assessment record {RECORD}: {e}") from e


def save(sysroot: Sysroot, record: AssessmentRecord) -> None:
    """Replace the record atomically, dropping verdicts on deployments that no longer exist."""
    alive = {(d.stateroot, d.name) for d in sysroot.all_deployments()}
    kept = tuple(a for a in record.deployments if (a.stateroot, a.deployment) in alive or a.state == "failed")
    path = sysroot.path / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    _fs.write_atomic(path, (json.dumps(AssessmentRecord(kept, record.last_fallback).to_json(), indent=1)
                            + "\n").encode())


def failed_commits(sysroot: Sysroot, stateroot: str | None = None) -> set[str]:
    """Commits that failed their health checks (``upgrade`` does not deploy them again unasked)."""
    return {a.checksum for a in load(sysroot).deployments
            if a.state == "failed" and (stateroot is None or a.stateroot == stateroot)}


def esp_states(sysroot: Sysroot) -> dict[tuple[str, str], esp_mod.EntryName]:
    """Each deployment's ESP entry (with its boot counter), when the ESP mirror is configured."""
    esp = esp_mod.esp_dir(sysroot)
    if esp is None:
        return {}
    out: dict[tuple[str, str], esp_mod.EntryName] = {}
    for f in esp_mod.list_entries(esp):
        n = esp_mod.EntryName.parse(f)
        if n is not None:
            key = (n.stateroot, n.deployment)
            if key not in out or out[key].seq < n.seq:
                out[key] = n
    return out


def status_fields(sysroot: Sysroot, d: Deployment, record: AssessmentRecord | None = None) -> dict[str, Any]:
    """The boot-counting and health fields ``status --json`` adds to one deployment.

    ``bootCounting``: the ESP entry and its counter (``null`` without an ESP mirror);
    ``health``: the last verdict of the health checks (``null`` when never assessed).
    """
    rec = record if record is not None else load(sysroot)
    name = esp_states(sysroot).get((d.stateroot, d.name))
    counting = None if name is None else {
        "entry": name.filename, "state": name.state.value, "triesLeft": name.left, "triesDone": name.done}
    a = rec.get(d)
    return {"bootCounting": counting, "health": a.to_json() if a is not None else None}
