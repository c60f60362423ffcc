"""bootc's ``BootcHost`` (``org.containers.bootc/v1``), built from a sysroot and its repository.

Layer: host. The field names and the null/omitted rules are bootc's (bootc-oci.md §1.8), so a
tool that parses ``bootc status --json`` parses this too: camelCase keys, ``otherDeployments``
left out when empty, ``signature`` left out for the default policy, ``type`` = ``bootcHost``
only when the booted entry has an image. A directory sysroot that is not booted has no
``booted`` entry; its deployments are listed under ``otherDeployments`` so that nothing is
hidden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bootree.errors import BootreeError
from bootree.format.oci import ImageConfig
from bootree.oci.importer import state_of_commit
from bootree.oci.reference import OstreeImageReference, SignatureKind
from bootree.sysroot import Deployment, Sysroot

__all__ = ["API_VERSION", "BootEntry", "Host", "ImageStatus", "build_host", "image_of"]

API_VERSION = "org.containers.bootc/v1"


def _spec_image(ref: OstreeImageReference) -> dict[str, Any]:
    out: dict[str, Any] = {"image": ref.image.name, "transport": ref.image.transport.value}
    if ref.sigverify is SignatureKind.OSTREE_REMOTE:
        out["signature"] = {"ostreeRemote": ref.remote}
    elif ref.sigverify is SignatureKind.CONTAINER_POLICY:
        out["signature"] = "containerPolicy"
    return out


@dataclass(frozen=True, slots=True)
class ImageStatus:
    """An entry's image: the reference, version, timestamp, manifest digest, architecture."""

    image: OstreeImageReference
    version: str | None
    timestamp: str | None
    image_digest: str
    architecture: str

    def to_json(self) -> dict[str, Any]:
        """bootc's ``ImageStatus``."""
        return {"image": _spec_image(self.image), "version": self.version, "timestamp": self.timestamp,
                "imageDigest": self.image_digest, "architecture": self.architecture}


@dataclass(frozen=True, slots=True)
class BootEntry:
    """One deployment as bootc shows it."""

    deployment: Deployment
    image: ImageStatus | None
    download_only: bool = False

    def to_json(self) -> dict[str, Any]:
        """bootc's ``BootEntry`` (store ``ostreeContainer``, no composefs)."""
        d = self.deployment
        return {
            "image": self.image.to_json() if self.image else None,
            "cachedUpdate": None,
            "incompatible": False,
            "pinned": d.pinned,
            "softRebootCapable": False,
            "downloadOnly": self.download_only,
            "store": "ostreeContainer",
            "ostree": {"stateroot": d.stateroot, "checksum": str(d.csum), "deploySerial": d.deployserial},
            "composefs": None,
        }


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_of(sysroot: Sysroot, d: Deployment) -> ImageStatus | None:
    """The image a deployment was made from: its origin's reference and the merge commit's metadata."""
    text = d.origin.container_image_reference if d.origin else None
    if not text:
        return None
    try:
        ref = OstreeImageReference.parse(text)
        state = state_of_commit(sysroot.repo, d.csum)
    except BootreeError:
        return None
    if state is None:
        return None
    try:
        cfg = ImageConfig.from_bytes(state.config)
    except BootreeError:
        return ImageStatus(ref, None, _rfc3339(state.timestamp), state.manifest_digest, "")
    return ImageStatus(ref, cfg.version, cfg.timestamp or _rfc3339(state.timestamp), state.manifest_digest,
                       cfg.architecture)


@dataclass(frozen=True, slots=True)
class Host:
    """The whole ``BootcHost`` document."""

    staged: BootEntry | None
    booted: BootEntry | None
    rollback: BootEntry | None
    others: tuple[BootEntry, ...]
    rollback_queued: bool

    @property
    def spec_image(self) -> OstreeImageReference | None:
        """What the host tracks: the staged image, else the booted one."""
        for e in (self.staged, self.booted):
            if e is not None and e.image is not None:
                return e.image.image
        return None

    def to_json(self) -> dict[str, Any]:
        """The document, as ``bootc status --format=json`` prints it."""
        spec = self.spec_image
        status: dict[str, Any] = {
            "staged": self.staged.to_json() if self.staged else None,
            "booted": self.booted.to_json() if self.booted else None,
            "rollback": self.rollback.to_json() if self.rollback else None,
        }
        if self.others:
            status["otherDeployments"] = [e.to_json() for e in self.others]
        status.update({
            "rollbackQueued": self.rollback_queued,
            "type": "bootcHost" if self.booted is not None and self.booted.image is not None else None,
            "usrOverlay": None,
            "readOnly": False,
        })
        return {
            "apiVersion": API_VERSION,
            "kind": "BootcHost",
            "metadata": {"name": "host"},
            "spec": {"image": _spec_image(spec) if spec else None,
                     "bootOrder": "rollback" if self.rollback_queued else "default"},
            "status": status,
        }

    def to_text(self) -> str:
        """The ``humanreadable`` format."""
        if self.booted is None and self.staged is None and not self.others:
            return "System is not deployed via bootc."
        lines: list[str] = []
        rows = [("Staged image", self.staged), ("● Booted image", self.booted), ("Rollback image", self.rollback)]
        rows += [("Other image", e) for e in self.others]
        for title, e in rows:
            if e is None:
                continue
            if lines:
                lines.append("")
            if e.image is None:
                lines.append(f"{title.rjust(16)}: (not a container image) {e.deployment.csum}")
                continue
            img = e.image
            lines.append(f"{title.rjust(16)}: {img.image.image.short}")
            arch = f" ({img.architecture})" if img.architecture else ""
            lines.append(f"{'Digest'.rjust(16)}: {img.image_digest}{arch}")
            when = f" ({img.timestamp})" if img.timestamp else ""
            lines.append(f"{'Version'.rjust(16)}: {img.version or '<none>'}{when}")
            if e.deployment.pinned:
                lines.append(f"{'Pinned'.rjust(16)}: yes")
            if e.download_only:
                lines.append(f"{'Download-only'.rjust(16)}: yes")
        if self.rollback_queued:
            lines.append("")
            lines.append("Rollback is queued for the next boot.")
        return "\n".join(lines)

    def to_yaml(self) -> str:
        """YAML (JSON is a subset of YAML 1.2; keys kept in bootc's order, one per line)."""
        return _yaml(self.to_json(), 0).rstrip("\n")


def _yaml(v: Any, indent: int) -> str:
    pad = "  " * indent
    if isinstance(v, dict):
        if not v:
            return "{}\n"
        out = ""
        for k, x in v.items():
            if isinstance(x, dict) and x:
                out += f"{pad}{k}:\n{_yaml(x, indent + 1)}"
            elif isinstance(x, list) and x:
                out += f"{pad}{k}:\n" + "".join(f"{pad}- " + _yaml(i, indent + 1).lstrip() for i in x)
            else:
                out += f"{pad}{k}: {json.dumps(x)}\n"
        return out
    return f"{json.dumps(v)}\n"


def build_host(sysroot: Sysroot) -> Host:
    """The host document of a loaded sysroot (bootc's sorting, §1.5)."""
    booted = sysroot.booted
    locked = sysroot.staged_locked_path.exists()
    staged = (BootEntry(sysroot.staged, image_of(sysroot, sysroot.staged), download_only=locked)
              if sysroot.staged else None)
    if booted is None:
        others = tuple(BootEntry(d, image_of(sysroot, d)) for d in sysroot.deployments)
        return Host(staged, None, None, others, False)
    mine = [d for d in sysroot.deployments if d.stateroot == booted.stateroot]
    rest = [d for d in mine if not d.same(booted)]
    rollback = rest[0] if rest else None
    b_idx = next(i for i, d in enumerate(sysroot.deployments) if d.same(booted))
    queued = False
    if rollback is not None:
        r_idx = next(i for i, d in enumerate(sysroot.deployments) if d.same(rollback))
        queued = r_idx < b_idx
    return Host(
        staged,
        BootEntry(booted, image_of(sysroot, booted)),
        BootEntry(rollback, image_of(sysroot, rollback)) if rollback else None,
        tuple(BootEntry(d, image_of(sysroot, d)) for d in rest[1:]),
        queued,
    )
