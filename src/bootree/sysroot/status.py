"""The status of a sysroot as one value: what ``admin status`` shows, in a versioned schema.

Layer: sysroot. :func:`sysroot_status` gathers everything a status display needs (the list in
ostree's order with the booted/staged/pending/rollback roles, boot counting and health, the
last automatic fallback, what the loader found damaged) into frozen dataclasses; the CLI only
renders them, as ostree's text or as JSON. The JSON is a contract for scripts: its shape is
``bootree.sysroot.status/v1`` (``schema`` key), described in ``docs/status-schema.md`` and
by the JSON Schema ``docs/schemas/sysroot-status-v1.json``. Keys are added, never renamed;
a change that is not an addition is a ``v2``.

The model is shaped for bootc's ``org.containers.bootc/v1`` ``BootcHost``: each
:class:`DeploymentStatus` has the fields of a bootc ``BootEntry``'s ``ostree`` part (stateroot,
checksum, deploy serial) and ``pinned``; :attr:`SysrootStatus.staged` / ``booted`` /
``rollback`` / ``other_deployments`` are ``HostStatus``'s slots; ``image`` is the place for a
bootc ``ImageStatus`` when a deployment comes from a container image (``None`` until then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bootree.errors import BootreeError
from bootree.sysroot import assessment
from bootree.sysroot.composefs import deployment_image
from bootree.sysroot.deployment import Deployment
from bootree.sysroot.sysroot import Sysroot

__all__ = ["SCHEMA", "BootCounting", "ComposefsStatus", "DeploymentStatus", "OstreeRef", "SysrootStatus", "sysroot_status"]

#: The value of the ``schema`` key of :meth:`SysrootStatus.to_json`.
SCHEMA = "bootree.sysroot.status/v1"


@dataclass(frozen=True, slots=True)
class OstreeRef:
    """Which ostree deployment an entry is: bootc's ``BootEntry.ostree``."""

    stateroot: str
    checksum: str
    deploy_serial: int

    def to_json(self) -> dict[str, Any]:
        """bootc's keys (``deploySerial``)."""
        return {"stateroot": self.stateroot, "checksum": self.checksum, "deploySerial": self.deploy_serial}


@dataclass(frozen=True, slots=True)
class BootCounting:
    """A deployment's ESP entry and its systemd-boot counter (only with an ESP mirror)."""

    entry: str
    state: str
    """``good``, ``indeterminate`` (tries left) or ``bad`` (out of tries): systemd-boot's counter."""
    tries_left: int | None
    tries_done: int | None

    def to_json(self) -> dict[str, Any]:
        """camelCase keys."""
        return {"entry": self.entry, "state": self.state, "triesLeft": self.tries_left, "triesDone": self.tries_done}


@dataclass(frozen=True, slots=True)
class ComposefsStatus:
    """A composefs-backed deployment's image: its fs-verity digest (what the commit must carry)."""

    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        """The ``composefs`` object of the v1 schema."""
        return {"digest": self.digest, "size": self.size}


def _composefs(sysroot: Sysroot, d: Deployment) -> ComposefsStatus | None:
    image = deployment_image(sysroot.deployment_dir(d))
    return None if image is None else ComposefsStatus(image.digest, image.size)


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One line of ``admin status``: a deployment and its role in the list."""

    index: int
    """Position in ``admin status`` (the staged deployment first): what ``undeploy``/``pin`` take."""
    ostree: OstreeRef
    bootcsum: str
    bootserial: int
    booted: bool
    staged: bool
    pending: bool
    rollback: bool
    pinned: bool
    version: str | None
    refspec: str | None
    origin: str | None
    """The ``.origin`` keyfile's text (``None``: the file is missing)."""
    kargs: str
    """Kernel arguments without ``ostree=``."""
    boot_counting: BootCounting | None = None
    health: assessment.DeploymentAssessment | None = None
    image: dict[str, Any] | None = None
    """bootc's ``ImageStatus`` for a deployment of a container image (later); ``None`` now."""
    composefs: ComposefsStatus | None = None
    """The deployment's composefs image (``.ostree.cfs``), ``None`` if it is not composefs-backed."""
    source_title: str | None = None
    """The commit's ``ostree.source-title`` (what it was built from), if any and readable."""

    @property
    def name(self) -> str:
        """``<checksum>.<serial>``."""
        return f"{self.ostree.checksum}.{self.ostree.deploy_serial}"

    @property
    def marker(self) -> str:
        """``staged``, ``pending``, ``rollback`` or empty: the word ostree prints after the name."""
        return "staged" if self.staged else "pending" if self.pending else "rollback" if self.rollback else ""

    def to_json(self) -> dict[str, Any]:
        """The deployment object of the v1 schema."""
        return {
            "index": self.index,
            "stateroot": self.ostree.stateroot,
            "checksum": self.ostree.checksum,
            "serial": self.ostree.deploy_serial,
            "bootcsum": self.bootcsum,
            "bootserial": self.bootserial,
            "booted": self.booted,
            "staged": self.staged,
            "pending": self.pending,
            "rollback": self.rollback,
            "pinned": self.pinned,
            "version": self.version,
            "refspec": self.refspec,
            "origin": self.origin,
            "kargs": self.kargs,
            "ostree": self.ostree.to_json(),
            "image": self.image,
            "bootCounting": self.boot_counting.to_json() if self.boot_counting is not None else None,
            "health": self.health.to_json() if self.health is not None else None,
            "composefs": self.composefs.to_json() if self.composefs is not None else None,
            "sourceTitle": self.source_title,
        }


@dataclass(frozen=True, slots=True)
class SysrootStatus:
    """Everything ``admin status`` says about a sysroot."""

    bootversion: int
    subbootversion: int
    deployments: tuple[DeploymentStatus, ...]
    last_fallback: dict[str, Any] | None = None
    """The health runner's last automatic rollback (``from``: names, ``to``: name), if any."""
    damage: tuple[str, ...] = field(default=())
    """What the loader found damaged in the boot configuration, and how it read it."""

    @property
    def staged(self) -> DeploymentStatus | None:
        """bootc's ``status.staged``."""
        return next((d for d in self.deployments if d.staged), None)

    @property
    def booted(self) -> DeploymentStatus | None:
        """bootc's ``status.booted``."""
        return next((d for d in self.deployments if d.booted), None)

    @property
    def rollback(self) -> DeploymentStatus | None:
        """bootc's ``status.rollback``."""
        return next((d for d in self.deployments if d.rollback), None)

    @property
    def other_deployments(self) -> tuple[DeploymentStatus, ...]:
        """bootc's ``status.otherDeployments``: neither staged, booted nor rollback."""
        return tuple(d for d in self.deployments if not (d.staged or d.booted or d.rollback))

    def to_json(self) -> dict[str, Any]:
        """The v1 document (``schema`` first)."""
        return {
            "schema": SCHEMA,
            "bootversion": self.bootversion,
            "subbootversion": self.subbootversion,
            "deployments": [d.to_json() for d in self.deployments],
            "lastFallback": self.last_fallback,
            "damage": list(self.damage),
        }


def _boot_counting(sysroot: Sysroot, d: Deployment, record: assessment.AssessmentRecord) -> BootCounting | None:
    c = assessment.status_fields(sysroot, d, record)["bootCounting"]
    if c is None:
        return None
    return BootCounting(str(c["entry"]), str(c["state"]), c["triesLeft"], c["triesDone"])


def _source_title(sysroot: Sysroot, d: Deployment) -> str | None:
    """``ostree.source-title`` of the deployment's commit; ``None`` when absent or unreadable
    (status still shows a deployment whose commit was pruned or damaged, as ostree does)."""
    try:
        value = sysroot.repo.read_commit(d.csum).get("ostree.source-title")
    except BootreeError:
        return None
    return value if isinstance(value, str) else None


def sysroot_status(sysroot: Sysroot) -> SysrootStatus:
    """The status of a loaded sysroot.

    Raises:
        SysrootError: for a malformed boot assessment record.
    """
    record = assessment.load(sysroot)
    pending, rollback = sysroot.pending_and_rollback()
    out = []
    for i, d in enumerate(sysroot.all_deployments()):
        out.append(DeploymentStatus(
            index=i,
            ostree=OstreeRef(d.stateroot, d.csum, d.deployserial),
            bootcsum=d.bootcsum,
            bootserial=d.bootserial,
            booted=d.same(sysroot.booted),
            staged=d.staged,
            pending=not d.staged and d.same(pending),
            rollback=not d.staged and d.same(rollback),
            pinned=d.pinned,
            version=d.version,
            refspec=d.refspec,
            origin=d.origin.text if d.origin else None,
            kargs=str(d.kargs.without("ostree")),
            boot_counting=_boot_counting(sysroot, d, record),
            health=record.get(d),
            composefs=_composefs(sysroot, d),
            source_title=_source_title(sysroot, d),
        ))
    return SysrootStatus(sysroot.bootversion, sysroot.subbootversion, tuple(out), record.last_fallback,
                         tuple(sysroot.damage))
