"""bootc's verbs on a sysroot: ``switch``, ``upgrade``, ``rollback`` (bootc-oci.md §1.3–1.5).

Layer: host. Each verb pulls with :func:`bootree.oci.importer.pull_image` (only missing layers
are fetched) and deploys the merge commit with :mod:`bootree.sysroot`: staged on a booted
system, as bootc does (the /etc merge and the boot entry at shutdown); on a directory sysroot
that is not booted, written as the new default at once (bootc's ``install to-filesystem``
job: ``switch --stateroot=NAME`` makes the first deployment). The origin file carries
``container-image-reference=`` with the same ``ostree-…:`` string bootc writes.

A commit that failed its health checks on this machine is not staged again by ``upgrade``
unless asked (issue 5's rule, :mod:`bootree.sysroot.assessment`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bootree.delta.offline import SignatureCheck
from bootree.errors import BootreeError, ImageError, NotBooted, SysrootError
from bootree.format.keyfile import KeyFile
from bootree.format.refspec import parse_refspec
from bootree.host.progress import ProgressJsonl
from bootree.host.remote_sig import remote_commit_check
from bootree.oci.deltapull import DeltaOffer, find_delta, pull_with_delta
from bootree.oci.encapsulated import CommitCheck
from bootree.oci.importer import PullResult, pull_image, state_of_commit
from bootree.oci.progress import PullProgress
from bootree.oci.reference import (
    BLOB_REF_PREFIX,
    IMAGE_REF_PREFIX,
    OstreeImageReference,
    SignatureKind,
    Transport,
    blob_ref,
)
from bootree.oci.registry import RegistryOptions
from bootree.oci.selinux import relabel_image
from bootree.oci.sigverify import Decision, PinnedSource, PolicyOptions, verify_image
from bootree.oci.source import ImageSource, open_source, resolve
from bootree.sysroot import Deployment, DeployOptions, Origin, Sysroot, assessment, deploy, layout, stage
from bootree.sysroot.ops import os_init

__all__ = ["CheckResult", "Outcome", "check", "current_image", "pull_verified", "switch", "upgrade"]

@dataclass(frozen=True, slots=True)
class Outcome:
    """What a verb did, and bootc's lines to print."""

    changed: bool
    lines: tuple[str, ...]
    pull: PullResult | None = None
    deployment: Deployment | None = None


def origin_for(ref: OstreeImageReference, base: Origin | None = None) -> Origin:
    """An origin keyfile with ``container-image-reference`` (other groups of ``base`` kept, refspec dropped)."""
    kf = base.keyfile() if base is not None else KeyFile()
    kf.remove_key("origin", "refspec")
    kf.set("origin", "container-image-reference", str(ref))
    return Origin(kf.to_text())


def _base(sysroot: Sysroot) -> Deployment | None:
    return sysroot.booted or (sysroot.deployments[0] if sysroot.deployments else None)


def current_image(sysroot: Sysroot) -> OstreeImageReference | None:
    """``spec.image``: the staged deployment's image, else the booted (or default) one's."""
    for d in (sysroot.staged, _base(sysroot)):
        text = d.origin.container_image_reference if d is not None and d.origin else None
        if text:
            return OstreeImageReference.parse(text)
    return None


def _digest_of(sysroot: Sysroot, d: Deployment | None) -> str | None:
    if d is None:
        return None
    try:
        st = state_of_commit(sysroot.repo, d.csum)
    except BootreeError:
        return None
    return st.manifest_digest if st else None


def seed_var(image_var: Path, stateroot_var: Path) -> None:
    """The image's ``/var`` content goes into a new stateroot's ``/var`` once, like a VOLUME.

    Later deployments never touch ``/var`` again (bootc-oci.md §2.4); nothing that exists is
    replaced. Files are copied (the deployment's are hardlinks into the repository).
    """
    if not image_var.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(image_var):
        rel = Path(dirpath).relative_to(image_var)
        dest = stateroot_var / rel
        if not dest.exists():
            dest.mkdir(mode=0o755)
            shutil.copystat(dirpath, dest)
            st = os.lstat(dirpath)
            os.chown(dest, st.st_uid, st.st_gid)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            src, out = Path(dirpath) / name, dest / name
            if os.path.lexists(out):
                continue
            if src.is_symlink():
                os.symlink(os.readlink(src), out)
            else:
                shutil.copy2(src, out)
            st = os.lstat(src)
            os.lchown(out, st.st_uid, st.st_gid)


def prune_images(sysroot: Sysroot) -> str | None:
    """bootc's GC after staging: image refs no deployment uses, then layer refs no image uses.

    Objects that are then unreachable are pruned. Returns bootc's summary line, or ``None``
    when nothing was removed.
    """
    repo = sysroot.repo
    deployed = {d.csum for d in sysroot.all_deployments()}
    images = repo.list_refs(IMAGE_REF_PREFIX.rstrip("/"))
    removed_images = 0
    keep_layers: set[str] = set()
    for name, csum in images.items():
        if csum not in deployed:
            repo.set_ref(name, None)
            removed_images += 1
            continue
        try:
            st = state_of_commit(repo, csum)
            layers = json.loads(st.manifest)["layers"] if st else []
            keep_layers.update(blob_ref(x["digest"]) for x in layers)
        except (BootreeError, ValueError, KeyError, TypeError):
            return None  # an image we cannot read: keep every layer rather than guess
    removed_layers = 0
    for name in repo.list_refs(BLOB_REF_PREFIX.rstrip("/")):
        if name not in keep_layers:
            repo.set_ref(name, None)
            removed_layers += 1
    if not removed_images and not removed_layers:
        return None
    result = repo.prune(refs_only=True, depth=0)
    return f"Pruned images: {removed_images} (layers: {removed_layers}, objsize: {result.bytes_freed})"


def _verified_source(ref: OstreeImageReference, options: RegistryOptions | None,
                     policy: PolicyOptions | None) -> tuple[ImageSource | None, Decision | None]:
    """For an ``ostree-image-signed:`` reference: the image checked against the containers policy.

    Returns a source pinned to the verified manifest (pull through it, then close it), or
    ``(None, None)`` for other references. Runs before anything is imported or staged.

    Raises:
        ContainerPolicyError: the policy refuses the image (see :mod:`bootree.oci.sigverify`).
    """
    if ref.sigverify is not SignatureKind.CONTAINER_POLICY:
        return None, None
    src = open_source(ref.image, options)
    try:
        decision = verify_image(ref.image, src, policy)
    except BaseException:
        src.close()
        raise
    return PinnedSource(src, decision.manifest), decision


def _delta_base(sysroot: Sysroot, target: OstreeImageReference) -> str | None:
    """The running image's digest, when a delta to ``target`` may start there (same repository)."""
    here = current_image(sysroot)
    if here is None or here.image.transport is not target.image.transport:
        return None
    if here.image.transport is Transport.REGISTRY:
        a, b = here.image.docker, target.image.docker
        if (a.registry_host, a.repository) != (b.registry_host, b.repository):
            return None
    elif here.image.layout_path_and_tag()[0] != target.image.layout_path_and_tag()[0]:
        return None
    return _digest_of(sysroot, _base(sysroot))


def pull_verified(sysroot: Sysroot, ref: OstreeImageReference, options: RegistryOptions | None,
                  policy: PolicyOptions | None, progress: PullProgress | None, *, deltas: bool = True,
                  check_delta: SignatureCheck | None = None) -> tuple[PullResult, tuple[str, ...]]:
    """Verify (signed references only), then pull: a published delta first, else the layers.

    Every verb that pulls an image for a sysroot goes through here (``switch``, ``upgrade``,
    ``install to-disk IMAGE``), so no origin form is pulled without its checks. The policy's
    verdict line comes first, then the delta's line or its one-line warning.

    An ``ostree-remote-image:`` reference has its encapsulated commit checked with the remote's
    keys inside the pull (:mod:`bootree.host.remote_sig`), before the commit is written, whether it
    comes by its layers or through a delta (the superblock's commit and detached metadata).
    """
    attempt = None
    with contextlib.ExitStack() as stack:
        check: CommitCheck | None = None
        if ref.sigverify is SignatureKind.OSTREE_REMOTE:
            assert ref.remote is not None
            check = stack.enter_context(remote_commit_check(sysroot, ref.remote))
        pinned, decision = _verified_source(ref, options, policy)
        src = pinned or open_source(ref.image, options)
        stack.callback(src.close)
        base = _delta_base(sysroot, ref) if deltas else None
        if base is not None:
            attempt = pull_with_delta(sysroot.repo, ref.image, src, base, progress=progress,
                                      check_signature=check_delta, commit_check=check)
        if attempt is not None and attempt.result is not None:
            res = attempt.result
        else:
            res = pull_image(sysroot.repo, ref.image, options=options, progress=progress, source=src,
                             commit_check=check)
    if res.changed:  # ostree-ext labels a merged tree with derived layers by the policy it carries
        state, relabeled = relabel_image(sysroot.repo, ref.image, res.state)
        if relabeled:
            res = dataclasses.replace(res, state=state,
                                      warnings=(*res.warnings, f"SELinux: relabeled {relabeled} files"))
    lines: tuple[str, ...] = (decision.line,) if decision is not None else ()
    if attempt is not None:
        lines += attempt.lines if attempt.result is not None else ((attempt.warning,) if attempt.warning else ())
    return res, lines


def _stage_and_clean(sysroot: Sysroot, res: PullResult, ref: OstreeImageReference, stateroot: str,
                     base: Deployment | None, download_only: bool, events: ProgressJsonl | None,
                     seed: bool = False) -> tuple[Deployment, str | None]:
    """Queue the pulled image and collect garbage, with bootc's ``staging`` events."""
    digest = res.state.manifest_digest
    if events is not None:
        events.staging(digest, 0)  # merging: the merge deployment is ``base``
        events.staging(digest, 1)
    dep = _queue(sysroot, res, ref, stateroot, base, download_only)
    if seed:
        seed_var(sysroot.deployment_dir(dep) / "var", sysroot.path / layout.var_dir(stateroot))
    if events is not None:
        events.staging(digest, 2)  # bound images: bootree has none to pull
        events.staging(digest, 3)
    pruned = prune_images(sysroot)
    if events is not None:
        events.staging(digest, 4)
    return dep, pruned


def _queue(sysroot: Sysroot, res: PullResult, ref: OstreeImageReference, stateroot: str,
           base: Deployment | None, download_only: bool) -> Deployment:
    origin = origin_for(ref, base.origin if base is not None and base.stateroot == stateroot else None)
    if sysroot.booted is not None:
        dep = stage(sysroot, res.state.commit, stateroot=stateroot, origin=origin).deployment
        if download_only:
            with open(sysroot.staged_locked_path, "w"):
                pass
        return dep
    if download_only:
        raise NotBooted("--download-only needs a booted system (it locks a staged deployment)")
    return deploy(sysroot, res.state.commit, stateroot=stateroot, origin=origin, opts=DeployOptions()).deployment


def _queued_lines(ref: OstreeImageReference, res: PullResult) -> tuple[str, ...]:
    from bootree.format.oci import ImageConfig

    version = ImageConfig.from_bytes(res.state.config).version
    lines = [f"Queued for next boot: {ref.image.short}"]
    if version:
        lines.append(f"  Version: {version}")
    lines.append(f"  Digest: {res.state.manifest_digest}")
    return tuple(lines)


def _pull_lines(res: PullResult) -> tuple[str, ...]:
    return (*res.warnings, f"layers already present: {res.layers_cached}; layers fetched: {res.layers_fetched}"
            f" ({res.bytes_fetched} bytes)")


def switch(sysroot: Sysroot, target: OstreeImageReference, *, stateroot: str | None = None, retain: bool = False,
           options: RegistryOptions | None = None, progress: PullProgress | None = None,
           policy: PolicyOptions | None = None, events: ProgressJsonl | None = None,
           deltas: bool = True, check_delta: SignatureCheck | None = None) -> Outcome:
    """``bootc switch``: track ``target``, pull it, queue it.

    Within one repository (another tag) a published delta is used as by :func:`upgrade`.

    The sysroot must be locked.

    Raises:
        SysrootError: no deployment and no ``stateroot`` to make the first one in.
        ImageError, LayerError, RegistryError: from the pull (nothing is staged).
        ContainerPolicyError: an ``ostree-image-signed:`` target the containers policy refuses
            (checked before any stateroot, object or ref is written).
    """
    base = _base(sysroot)
    if base is None and stateroot is None:
        raise SysrootError("no deployment to switch from", hint="name the stateroot of the first deployment: --stateroot=NAME")
    sr = stateroot or (base.stateroot if base else "default")
    if base is not None and current_image(sysroot) == target and (stateroot is None or stateroot == base.stateroot):
        return Outcome(False, ("Image specification is unchanged.",))
    res, verdict = pull_verified(sysroot, target, options, policy, progress, deltas=deltas, check_delta=check_delta)
    new_stateroot = sr not in sysroot.stateroots() and os_init(sysroot, sr)
    if not retain and base is not None and base.refspec:
        # bootc drops the ostree ref the old origin followed, so that it can be pruned later.
        with contextlib.suppress(BootreeError):
            spec = parse_refspec(base.refspec)
            if spec.remote is None and sysroot.repo.try_resolve_rev(spec.ref) is not None:
                sysroot.repo.set_ref(spec.ref, None)
    dep, pruned = _stage_and_clean(sysroot, res, target, sr, base, False, events, seed=bool(new_stateroot))
    return Outcome(True, verdict + _pull_lines(res) + _queued_lines(target, res) + ((pruned,) if pruned else ()), res,
                   dep)


def upgrade(sysroot: Sysroot, *, download_only: bool = False, allow_failed: bool = False,
            options: RegistryOptions | None = None, progress: PullProgress | None = None,
            policy: PolicyOptions | None = None, events: ProgressJsonl | None = None,
            deltas: bool = True, check_delta: SignatureCheck | None = None) -> Outcome:
    """``bootc upgrade``: pull the tracked image again; queue it if its digest changed.

    A delta published from the running image (:mod:`bootree.oci.deltapull`) is used when
    ``deltas`` is set and it checks out (a signed one with ``check_delta``, libostree's rule:
    :func:`bootree.delta.offline.check_superblock_signature`); otherwise the changed layers
    are fetched.

    The sysroot must be locked.

    Raises:
        NotBooted: no deployment at all.
        ImageError: the host does not track a container image.
        ContainerPolicyError: an ``ostree-image-signed:`` origin whose image the policy now
            refuses (nothing is pulled or staged).
    """
    base = _base(sysroot)
    if base is None:
        raise NotBooted("no deployment to upgrade")
    ref = current_image(sysroot)
    if ref is None:
        raise ImageError("No image source specified", hint="this deployment is not from a container image: use 'bootree switch IMAGE'")
    res, verdict = pull_verified(sysroot, ref, options, policy, progress, deltas=deltas, check_delta=check_delta)
    digest = res.state.manifest_digest
    staged_digest = _digest_of(sysroot, sysroot.staged)
    if staged_digest == digest:
        if download_only:
            with open(sysroot.staged_locked_path, "w"):
                pass
            return Outcome(False, ("Staged update present, not changed",), res)
        if sysroot.staged_locked_path.exists():
            os.unlink(sysroot.staged_locked_path)
            return Outcome(True, ("Staged deployment will now be applied on reboot",), res)
        return Outcome(False, ("Staged update present, not changed",), res)
    if _digest_of(sysroot, base) == digest:
        return Outcome(False, ("No update available.",), res)
    if not allow_failed and res.state.commit in assessment.failed_commits(sysroot, base.stateroot):
        return Outcome(False, (f"Not staging {digest}: it failed its health checks on this system "
                               "(use --allow-failed to stage it anyway)",), res)
    dep, pruned = _stage_and_clean(sysroot, res, ref, base.stateroot, base, download_only, events)
    return Outcome(True, verdict + _pull_lines(res) + _queued_lines(ref, res) + ((pruned,) if pruned else ()), res, dep)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """A layer an update would fetch."""

    digest: str
    size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """``upgrade --check``: the remote image and what fetching it would cost."""

    image: OstreeImageReference
    digest: str
    version: str | None
    available: bool
    layers_total: int
    new_layers: tuple[LayerInfo, ...] = field(default=())
    delta: DeltaOffer | None = None
    """A published delta from the running image that the update would use."""

    @property
    def lines(self) -> tuple[str, ...]:
        """bootc's wording."""
        if not self.available:
            return (f"No changes in: {self.image}",)
        size = sum(x.size for x in self.new_layers)
        out = [f"Update available for: {self.image}"]
        if self.version:
            out.append(f"  Version: {self.version}")
        out.append(f"  Digest: {self.digest}")
        out.append(f"Total new layers: {len(self.new_layers)}  Size: {size}")
        out += [f"Added layer: {x.digest} ({x.size} bytes)" for x in self.new_layers]
        if self.delta is not None:
            out.append(f"Delta: {self.delta.artifact.digest} ({self.delta.size} bytes, from "
                       f"{self.delta.artifact.from_digest}): fetched instead of the layers")
        return tuple(out)

    def to_json(self) -> dict[str, object]:
        """The machine-readable form (bootc issue #247)."""
        return {"image": str(self.image), "imageDigest": self.digest, "version": self.version,
                "updateAvailable": self.available, "layersTotal": self.layers_total,
                "newLayers": [{"digest": x.digest, "size": x.size, "mediaType": x.media_type} for x in self.new_layers],
                "delta": None if self.delta is None else {
                    "digest": self.delta.artifact.digest, "size": self.delta.size,
                    "fromDigest": self.delta.artifact.from_digest, "foundBy": self.delta.found_by},
                "bytesToFetch": self.delta.size if self.delta is not None else sum(x.size for x in self.new_layers)}


def check(sysroot: Sysroot, *, options: RegistryOptions | None = None, policy: PolicyOptions | None = None) -> CheckResult:
    """``upgrade --check``: fetch only the manifest and config; nothing is written.

    An ``ostree-image-signed:`` origin's image is checked against the containers policy first.

    Raises:
        ImageError: the host does not track a container image.
        ContainerPolicyError: the policy refuses the image.
    """
    ref = current_image(sysroot)
    if ref is None:
        raise ImageError("No image source specified")
    pinned, _ = _verified_source(ref, options, policy)
    src = pinned or open_source(ref.image, options)
    current = _digest_of(sysroot, sysroot.staged) or _digest_of(sysroot, _base(sysroot))
    offer = None
    try:
        resolved = resolve(src)
        base = _delta_base(sysroot, ref)
        if base is not None and current != resolved.digest:
            with contextlib.suppress(BootreeError, OSError, ValueError):  # no delta: the layers are the answer
                offer, _ = find_delta(sysroot.repo, src, resolved.digest, base)
    finally:
        src.close()
    missing = tuple(LayerInfo(d.digest, d.size, d.media_type) for d in dict.fromkeys(resolved.manifest.layers)
                    if sysroot.repo.try_resolve_rev(blob_ref(d.digest)) is None)
    if offer is not None and offer.size >= sum(x.size for x in missing):
        offer = None  # the update would not use it (deltapull's rule)
    return CheckResult(ref, resolved.digest, resolved.config.version, current != resolved.digest,
                       len(resolved.manifest.layers), missing if current != resolved.digest else (), offer)


def apply(sysroot: Sysroot) -> str:
    """``--apply``: reboot into what was queued.

    On the running system that is ``systemctl reboot``; on a directory sysroot it is the boot
    simulator's reboot (finalize the staged deployment, boot the default entry, record it).
    The sysroot must be locked.
    """
    if sysroot.is_root:
        from bootree import _run

        _run.run(["systemctl", "reboot"])
        return "Rebooting"
    from bootree.sysroot.bootsim import boot

    result = boot(sysroot, ())
    d = result.choice.deployment
    return f"Booted {d.stateroot} {d.name}"
