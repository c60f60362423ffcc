"""``admin status --json`` is the ``bootree.sysroot.status/v1`` document its JSON Schema describes.

The schema (``docs/schemas/sysroot-status-v1.json``) is checked against real output of an empty
sysroot, of two deployments, and of a booted one with a staged deployment, a pin and a health
verdict (every nullable branch filled once); the validator itself is shown to reject documents
that break the schema, so the test can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sysrootenv import SysrootEnv

from bootree.sysroot import DeployOptions, Origin, assessment, deploy, ops, stage
from bootree.sysroot.bootsim import _record_boot, choose_entry
from bootree.sysroot.status import SCHEMA, sysroot_status
from jsonschema_mini import validate

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "docs/schemas/sysroot-status-v1.json"
ORIGIN = Origin.for_refspec("sampleos/stable")


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())  # type: ignore[no-any-return]


def _status_json(env: SysrootEnv) -> Any:
    out = subprocess.run([sys.executable, "-m", "bootree", "admin", "status", f"--sysroot={env.path}", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_empty_and_two_deployments_validate(env: SysrootEnv) -> None:
    doc = _status_json(env)
    assert validate(doc, _schema()) == []
    assert doc["schema"] == SCHEMA and doc["deployments"] == []
    for v in (1, 2):
        with env.sysroot.lock():
            deploy(env.sysroot, env.commit(v), stateroot="sampleos", origin=ORIGIN,
                   opts=DeployOptions(kargs=("quiet",)))
    doc = _status_json(env)
    assert validate(doc, _schema()) == []
    assert [d["version"] for d in doc["deployments"]] == ["2", "1"]
    assert doc["deployments"][0]["ostree"] == {"stateroot": "sampleos", "checksum": doc["deployments"][0]["checksum"],
                                               "deploySerial": 0}
    assert doc["deployments"][0]["kargs"] == "quiet"


def test_booted_staged_pinned_and_assessed_validate(env: SysrootEnv) -> None:
    s = env.sysroot
    with s.lock():
        deploy(s, env.commit(1), stateroot="sampleos", origin=ORIGIN)
        deploy(s, env.commit(2), stateroot="sampleos", origin=ORIGIN)
        ops.set_pinned(s, 1, True)
        _record_boot(s, choose_entry(s))  # as the boot simulator records a boot of the default
    s = env.reopen()
    booted = s.booted
    assert booted is not None
    assessment.save(s, assessment.AssessmentRecord(
        (assessment.DeploymentAssessment("sampleos", booted.name, booted.csum, "failed", ("10-check",), 1, "x"),),
        {"from": [booted.name], "to": s.deployments[1].name}))
    with s.lock():
        stage(s, env.commit(3), stateroot="sampleos", origin=ORIGIN)
    doc = _status_json(env)
    assert validate(doc, _schema()) == []
    roles = [(d["staged"], d["booted"], d["rollback"], d["pinned"]) for d in doc["deployments"]]
    assert roles == [(True, False, False, False), (False, True, False, False), (False, False, True, True)]
    assert doc["deployments"][1]["health"]["failedChecks"] == ["10-check"]
    assert doc["lastFallback"]["to"] == s.deployments[1].name
    # The model's bootc slots (HostStatus.staged/booted/rollback) are the same deployments.
    model = sysroot_status(env.reopen())
    assert model.staged is not None and model.staged.index == 0
    assert model.booted is not None and model.booted.name == booted.name
    assert model.rollback is not None and model.rollback.index == 2
    assert model.other_deployments == ()


@pytest.mark.parametrize("breakage", ["schema", "checksum", "missing", "extra-ostree-key", "type"])
def test_validator_rejects_what_the_schema_forbids(breakage: str) -> None:
    good: dict[str, Any] = {
        "schema": SCHEMA, "bootversion": 0, "subbootversion": 0, "lastFallback": None, "damage": [],
        "deployments": [{
            "index": 0, "stateroot": "os", "checksum": "a" * 64, "serial": 0, "bootcsum": "b" * 64, "bootserial": 0,
            "booted": False, "staged": False, "pending": False, "rollback": False, "pinned": False, "version": None,
            "refspec": None, "origin": None, "kargs": "", "image": None, "bootCounting": None, "health": None,
            "ostree": {"stateroot": "os", "checksum": "a" * 64, "deploySerial": 0},
        }],
    }
    assert validate(good, _schema()) == []
    d = good["deployments"][0]
    if breakage == "schema":
        good["schema"] = "bootree.sysroot.status/v0"
    elif breakage == "checksum":
        d["checksum"] = "A" * 64
    elif breakage == "missing":
        del d["bootcsum"]
    elif breakage == "extra-ostree-key":
        d["ostree"]["serial"] = 0
    else:
        d["booted"] = 1
    assert validate(good, _schema()) != []
