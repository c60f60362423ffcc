"""Update an image through a published delta instead of its changed layers.

Layer: oci. :func:`pull_with_delta` is tried before :func:`bootree.oci.importer.pull_image`
when the host runs an image (``from_digest``): it lists the new manifest's referrers (the
referrers API, then the tag fallback; an ``oci:`` layout's index), picks a delta artifact
(:mod:`bootree.oci.deltaartifact`) whose from-digest is the running image and whose
from-commit is in the repository, and then:

1. checks the new image: every layer belongs to its ostree commit (no derived layers) and its
   ``ostree.commit`` label is the delta's ``to`` commit; the delta and the layer map must be
   smaller than the layers that are missing;
2. downloads the layer map (its layer list must be the image's) and then the delta blob
   (size-bounded, digest-checked); checks the delta's signature when a key is given, and that
   the superblock names this layer map's digest (a signed delta must: its signature then
   covers the map);
3. in one transaction: applies the delta (every object verified,
   :func:`bootree.delta.apply.apply_delta`), writes the layers' ``ostree/container/blob/…``
   refs as the layer import would (the commit layer → the commit, each chunk layer → its
   object-set commit, from the layer map) and the merge commit through the importer's own
   :func:`~bootree.oci.importer.write_merge_commit`, so the repository ends up as a layer
   import leaves it, the same merge commit checksum included.

Anything missing, mismatched or failing gives a :class:`DeltaOutcome` with no result and a
one-line warning; the transaction is aborted, so nothing from a bad delta is published, and
the caller fetches layers instead.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from bootree.delta.apply import apply_delta
from bootree.delta.offline import MAX_SUPERBLOCK_SIZE, SignatureCheck, open_superblock_file
from bootree.errors import BootreeError, ChecksumMismatch, DeltaError, DeltaFormatError, ImageError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.delta import Superblock
from bootree.format.objects import Commit, DirTree
from bootree.oci.deltaartifact import (
    ARTIFACT_TYPE,
    FROM_DIGEST,
    LAYERMAP_KEY,
    DeltaArtifact,
    LayerMap,
    parse_artifact,
)
from bootree.oci.encapsulated import CommitCheck, StagedReader, object_set_commit, parse_layout
from bootree.oci.importer import ImageState, PullResult, image_state, image_timestamp, write_merge_commit
from bootree.oci.progress import LayerTask, PullPlan, PullProgress
from bootree.oci.reference import ImageReference, blob_ref
from bootree.oci.referrers import Referrer, list_referrers, parse_referrers
from bootree.oci.sigverify import PinnedSource
from bootree.oci.source import (
    ImageSource,
    LayoutSource,
    RegistrySource,
    ResolvedImage,
    resolve_config,
    resolve_manifest,
)
from bootree.repo import Repo
from bootree.repo.mtree import MutableTree
from bootree.repo.transaction import Transaction

__all__ = ["DeltaOffer", "DeltaOutcome", "check_layer_map", "find_delta", "pull_with_delta"]

#: bootc-style subtask name of the delta download in progress events.
PROGRESS_KIND = "ostree delta"


@dataclass(frozen=True, slots=True)
class DeltaOffer:
    """A usable-looking delta for this host: the artifact, and what the layers would cost."""

    artifact: DeltaArtifact
    found_by: str
    """``api``, ``tag`` or ``layout``: where the referrer was listed."""

    @property
    def size(self) -> int:
        """Bytes to fetch: the delta and the layer map."""
        return self.artifact.delta.size + self.artifact.layer_map.size


@dataclass(frozen=True, slots=True)
class DeltaOutcome:
    """What :func:`pull_with_delta` did: a pull result, or why not (``warning``; ``None``: no delta)."""

    result: PullResult | None = None
    warning: str | None = None
    offer: DeltaOffer | None = None
    layer_bytes: int = 0
    """The compressed size of the layers the delta replaced."""

    @property
    def lines(self) -> tuple[str, ...]:
        """What to print when the delta was used."""
        if self.result is None or self.offer is None:
            return ()
        a = self.offer.artifact
        return (f"Fetched delta {a.digest} from {a.from_digest}: {self.offer.size} bytes "
                f"instead of {self.layer_bytes} bytes of layers",)


def _unwrap(src: ImageSource) -> ImageSource:
    while isinstance(src, PinnedSource):
        src = src.inner
    return src


def _referrers(src: ImageSource, subject: str) -> tuple[list[Referrer], str]:
    inner = _unwrap(src)
    if isinstance(inner, RegistrySource):
        return list_referrers(inner.client, inner.ref.repository, subject, ARTIFACT_TYPE)
    if isinstance(inner, LayoutSource):
        # Image-layout 1.1: referrers are among the index's manifests (their subject is checked later).
        entries = parse_referrers((inner.root / "index.json").read_bytes(), f"{inner.root}/index.json")
        return [e for e in entries if e.artifact_type == ARTIFACT_TYPE], "layout"
    return [], "none"


def find_delta(repo: Repo, src: ImageSource, subject: str, from_digest: str) -> tuple[DeltaOffer | None, str | None]:
    """The delta artifact of ``subject`` that starts at ``from_digest`` and at a local commit.

    Returns ``(offer, None)``, ``(None, None)`` when none is published from that image, or
    ``(None, warning)`` when one is but cannot be used.

    Raises:
        RegistryError, FormatError, ImageError: listing or reading a referrer failed.
    """
    entries, found_by = _referrers(src, subject)
    candidates = [e for e in entries if e.annotations.get(FROM_DIGEST) == from_digest]
    why: str | None = None
    for entry in candidates:
        fetched = src.manifest(entry.descriptor.digest)
        if fetched.digest != entry.descriptor.digest or len(fetched.data) != entry.descriptor.size:
            why = f"referrer {entry.descriptor.digest} does not match its descriptor"
            continue
        art = parse_artifact(fetched.data, fetched.digest)
        if art.subject.digest != subject or art.from_digest != from_digest:
            why = f"delta {art.digest} is for another pair of images"
            continue
        if not repo.has_object(ObjectType.COMMIT, art.from_commit) or repo.is_partial(art.from_commit):
            why = f"delta {art.digest} starts at commit {art.from_commit}, which is not in the repository"
            continue
        return DeltaOffer(art, found_by), None
    return None, why


def _all_files(tree: MutableTree) -> set[Checksum]:
    out: set[Checksum] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        out.update(node.files.values())
        todo.extend(node.dirs.values())
    return out


def _layer_refs(txn: Transaction, repo: Repo, resolved: ResolvedImage, lmap: LayerMap, merged: MutableTree,
                to_commit: Checksum) -> None:
    """The layers' blob refs, as the layer import writes them (only those not there yet)."""
    layers = resolved.manifest.layers
    if lmap.layers != tuple(d.digest for d in layers):
        raise ImageError("the delta's layer map is for other layers than the image's")
    objects = sorted(_all_files(merged))
    indexes = lmap.indexes()
    if len(indexes) != len(objects):
        raise ImageError(f"the delta's layer map places {len(indexes)} objects, the commit has {len(objects)}")
    by_layer: list[list[Checksum]] = [[] for _ in layers]
    for csum, i in zip(objects, indexes, strict=True):
        by_layer[i].append(csum)
    for i, desc in enumerate(layers):
        if repo.try_resolve_rev(blob_ref(desc.digest)) is None:
            txn.set_ref(blob_ref(desc.digest), to_commit if i == 0 else object_set_commit(txn, by_layer[i]))


def check_layer_map(superblock: Superblock, artifact: DeltaArtifact, *, verified: bool) -> None:
    """The artifact's layer map is the one its delta names (:data:`LAYERMAP_KEY`).

    Checked before anything is applied. A delta whose signature was checked (``verified``)
    must name it: only then does the signature vouch for the blob refs the map makes. An
    unsigned one may predate the key; when it names a map, it must be this one.

    Raises:
        DeltaError: the delta names another map, or is verified and names none.
    """
    named = superblock.get(LAYERMAP_KEY)
    if named is None:
        if verified:
            raise DeltaError(f"delta {artifact.delta.digest} is signed but does not name its layer map")
        return
    if named != artifact.layer_map.digest:
        raise DeltaError(f"delta {artifact.delta.digest} names layer map {named}, "
                         f"its artifact carries {artifact.layer_map.digest}")


class _Apply:
    """One delta update of ``image`` (see the module docstring)."""

    def __init__(self, repo: Repo, image: ImageReference, src: ImageSource, resolved: ResolvedImage,
                 offer: DeltaOffer, progress: PullProgress | None, check_signature: SignatureCheck | None,
                 commit_check: CommitCheck | None = None) -> None:
        self.repo, self.image, self.src, self.resolved = repo, image, src, resolved
        self.offer, self.progress, self.check_signature = offer, progress, check_signature
        self.commit_check = commit_check
        self.art = offer.artifact
        missing = [d for d in resolved.manifest.layers if repo.try_resolve_rev(blob_ref(d.digest)) is None]
        self.layer_bytes = sum(d.size for d in missing)
        self.layers_cached = len(resolved.manifest.layers) - len(missing)

    def check_image(self) -> None:
        layers = self.resolved.manifest.layers
        layout = parse_layout(self.resolved.config)
        if not layout.encapsulated or layout.ostree_layers != len(layers):
            raise ImageError("the image has layers outside its ostree commit (a delta covers only the commit)")
        if layout.commit != self.art.to_commit:
            raise ImageError(f"the delta leads to {self.art.to_commit}, the image's ostree.commit is {layout.commit}")
        if self.offer.size >= self.layer_bytes:
            raise ImageError(f"the delta ({self.offer.size} bytes) is not smaller than the layers to fetch "
                             f"({self.layer_bytes} bytes)")
        if self.art.delta.size > MAX_SUPERBLOCK_SIZE:
            raise ImageError(f"the delta declares {self.art.delta.size} bytes (limit {MAX_SUPERBLOCK_SIZE})")

    def fetch(self, dest: Path) -> LayerMap:
        d = self.art.delta
        task = LayerTask(d.digest, d.size, PROGRESS_KIND)
        p = self.progress
        layers = self.resolved.manifest.layers
        if p is not None:
            p.plan(PullPlan(self.resolved.digest, len(layers), sum(x.size for x in layers), (task,)))
            p.layer_started(task)
        lmap = LayerMap.from_bytes(self.src.blob_bytes(self.art.layer_map))
        if lmap.layers != tuple(x.digest for x in layers):  # before the delta's bytes travel
            raise ImageError("the delta's layer map is for other layers than the image's")
        self.src.fetch_blob(d, dest, None if p is None else (lambda n: p.layer_bytes(task, n)))
        if p is not None:
            p.layer_done(task)
        on_disk = os.path.getsize(dest)
        if on_disk != d.size:
            raise DeltaFormatError(f"delta {d.digest}: {on_disk} bytes on disk, {d.size} declared")
        return lmap

    def _check_commit(self, csum: Checksum, commit: bytes, detached: bytes | None) -> None:
        """The remote's signature check of the commit the delta leads to, before anything is written.

        An ``ostree-remote-image:`` origin trusts the commit only when the remote's keys signed
        it; the layer import checks the encapsulated commit and its ``.commitmeta``, here the
        superblock's commit and detached metadata (which the generator copies from the
        publisher's repository) stand in for them. The bytes are hashed first, so the
        signature is checked over the very commit that ``apply_delta`` will write.
        """
        assert self.commit_check is not None
        actual = Checksum(hashlib.sha256(commit).hexdigest())
        if actual != csum:
            raise ChecksumMismatch(csum, actual, "delta commit")
        self.commit_check(csum, commit, detached)

    def run(self) -> PullResult:
        self.check_image()
        blobdir = self.repo.path / "tmp" / "bootree-oci"
        os.makedirs(blobdir, 0o700, exist_ok=True)
        path = blobdir / (self.art.delta.digest.removeprefix("sha256:") + ".delta")
        try:
            lmap = self.fetch(path)
            # Streamed from the file part by part (a whole 20 MB superblock decoded at once cost
            # 430 MB of RSS); a signed one is read once for its check and applied from those bytes.
            sbf = open_superblock_file(path)
            if sbf.signed and self.check_signature is not None:
                sbf = sbf.checked(self.check_signature)
            elif sbf.signed and self.repo.config.get_bool("core", "sign-verify-deltas", False):
                raise DeltaError("Key is mandatory to check delta signature",
                                 hint="give the publisher's public key (--keys-file=FILE, --keys-dir=DIR)")
            superblock = sbf.superblock
            if superblock.to_commit != self.art.to_commit or superblock.from_commit != self.art.from_commit:
                raise DeltaError(f"delta {self.art.delta.digest} is {superblock.from_commit} → {superblock.to_commit},"
                                 f" its artifact says {self.art.from_commit} → {self.art.to_commit}")
            if any(i not in sbf.scan.inline for i in range(len(superblock.parts))):
                raise DeltaFormatError(f"image delta {self.art.delta.digest} has parts that are not inline"
                                       " (an image delta is self-contained)")
            check_layer_map(superblock, self.art, verified=sbf.verified)
            if self.commit_check is not None:
                self._check_commit(superblock.to_commit, superblock.commit, superblock.commitmeta)
            ts = image_timestamp(self.resolved.config.timestamp)
            with self.repo.transaction() as txn:
                applied = apply_delta(self.repo, txn, superblock, sbf.load_part)
                value = Commit.from_bytes(superblock.commit)
                staged = {c: DirTree.from_bytes(b) for c, b in applied.dirtrees.items()}
                merged = MutableTree()
                merged.overlay_commit_tree(StagedReader(self.repo, staged), value.root_tree, value.root_meta)
                _layer_refs(txn, self.repo, self.resolved, lmap, merged, self.art.to_commit)
                if self.progress is not None:
                    self.progress.importing(False)
                csum = write_merge_commit(txn, self.image, self.resolved, merged, self.art.to_commit, ts)
        finally:
            path.unlink(missing_ok=True)
        if self.progress is not None:
            self.progress.importing(True)
        r = self.resolved
        warnings: tuple[str, ...] = ()
        if r.config.labels.get("containers.bootc") != "1":
            warnings = ("notice: Image is missing label: containers.bootc",)
        state = ImageState(csum, r.digest, r.manifest_bytes, r.config_bytes, ts)
        return PullResult(self.image, state, True, 0, self.layers_cached, self.src.stats.bytes, (), warnings,
                          self.art.to_commit)


def pull_with_delta(repo: Repo, image: ImageReference, src: ImageSource, from_digest: str, *,
                    progress: PullProgress | None = None, check_signature: SignatureCheck | None = None,
                    architecture: str | None = None, commit_check: CommitCheck | None = None) -> DeltaOutcome:
    """Update ``image`` from the running ``from_digest`` through a delta, if one is published.

    ``check_signature`` checks a signed superblock (the publisher's delta key); ``commit_check``
    (an ``ostree-remote-image:`` origin) checks the commit the delta leads to with the remote's
    keys, as the layer import would. Never raises for the delta's sake: a result, or a warning
    (the caller then pulls layers, which run ``commit_check`` again and refuse for themselves).
    """
    try:
        fetched, manifest = resolve_manifest(src, architecture)
        prev = image_state(repo, image)
        if fetched.digest == from_digest or (prev is not None and prev.manifest_digest == fetched.digest):
            return DeltaOutcome()
        offer, why = find_delta(repo, src, fetched.digest, from_digest)
    except (BootreeError, OSError, ValueError) as e:
        return DeltaOutcome(warning=f"warning: no delta: looking up referrers failed ({e}); fetching layers")
    if offer is None:
        return DeltaOutcome(warning=None if why is None else f"warning: delta not used: {why}; fetching layers")
    job: _Apply | None = None
    try:
        resolved = resolve_config(src, fetched, manifest, architecture)
        job = _Apply(repo, image, src, resolved, offer, progress, check_signature, commit_check)
        result = job.run()
    except (BootreeError, OSError, ValueError) as e:
        return DeltaOutcome(warning=f"warning: delta {offer.artifact.digest} not used: {e}; fetching layers",
                            offer=offer)
    return DeltaOutcome(result, None, offer, job.layer_bytes)
