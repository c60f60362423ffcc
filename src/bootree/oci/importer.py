"""Pull an image into the repository as ostree-ext's container store lays it out.

Layer: oci. :func:`pull_image` is ``ImageImporter::prepare`` + ``import`` (bootc-oci.md §2.3):

1. resolve the manifest (and the host platform's entry of an index) and the config;
2. if the image ref already holds that manifest digest: nothing to do (no blob is fetched);
3. every layer without a ``ostree/container/blob/<esc(digest)>`` commit is fetched
   (:mod:`bootree.oci.fetch`: a few downloads at once, ahead of the import; verified; an
   interrupted download resumes) and imported into a commit of its own, the decompression,
   hashing and object writes spread over the cores (:mod:`bootree.oci.stream`); layers already
   present are neither fetched nor read beyond their dirtrees;
4. an encapsulated image's ostree layers (``ostree.final-diffid``, :mod:`bootree.oci.encapsulated`)
   give back the very commit that was published (same checksum, every object verified, the
   tree checked complete); the commit layer's blob ref points at it;
5. the layers are merged in order (the encapsulated commit's tree first, if any), whiteouts
   and opaque directories acting on lower layers only; the image must hold a kernel
   (``usr/lib/modules/*/vmlinuz``);
6. the merge commit carries ``ostree.manifest-digest``, ``ostree.manifest``,
   ``ostree.container.image-config`` and ``ostree.importer.version`` (its parent is the
   encapsulated commit) and goes to ``ostree/container/image/<esc(imgref)>``.

With ``commit_check`` (an ``ostree-remote-image:`` origin), the image must be encapsulated and
its commit pass the check: before the commit layer's objects are written when it is fetched,
from the stored commit when that layer (or the whole image) is already present.

Steps 3–6 run in one transaction: if any layer is unsafe, any digest wrong, an object missing
or the kernel missing, no object and no ref is published.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bootree import __version__
from bootree.errors import BootreeError, FormatError, ImageError, SignatureError
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit, DirTree
from bootree.format.oci import Descriptor, layer_compression
from bootree.oci.encapsulated import (
    COMMIT_LABEL,
    CommitCheck,
    LayerKind,
    Layout,
    StagedReader,
    check_stored_commit,
    import_object_layer,
    object_set_commit,
    parse_layout,
    verify_complete,
)
from bootree.oci.fetch import LayerFetcher
from bootree.oci.layer import LayerStats, import_layer
from bootree.oci.partial import partial_fetcher
from bootree.oci.progress import LayerTask, PullPlan, PullProgress
from bootree.oci.reference import IMAGE_REF_PREFIX, ImageReference, blob_ref, image_ref
from bootree.oci.registry import RegistryOptions
from bootree.oci.source import ImageSource, ResolvedImage, open_source, resolve_config, resolve_manifest
from bootree.oci.stream import WritePool
from bootree.repo import Repo
from bootree.repo.mtree import MutableTree
from bootree.repo.transaction import Transaction

__all__ = ["ImageState", "PullResult", "image_state", "image_timestamp", "merge_layer", "pull_image", "write_merge_commit"]

log = logging.getLogger(__name__)

MANIFEST_DIGEST_KEY = "ostree.manifest-digest"
MANIFEST_KEY = "ostree.manifest"
CONFIG_KEY = "ostree.container.image-config"
IMPORTER_KEY = "ostree.importer.version"

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class ImageState:
    """What the store says about an imported image: its merge commit and the documents."""

    commit: Checksum
    manifest_digest: str
    manifest: bytes
    config: bytes
    timestamp: int


@dataclass(frozen=True, slots=True)
class PullResult:
    """What :func:`pull_image` found and did."""

    image: ImageReference
    state: ImageState
    changed: bool
    layers_fetched: int
    layers_cached: int
    bytes_fetched: int
    layer_stats: tuple[LayerStats, ...] = ()
    warnings: tuple[str, ...] = ()
    ostree_commit: Checksum | None = None
    """The encapsulated commit (the image's ``ostree.commit``), for an encapsulated image."""


def image_state(repo: Repo, image: ImageReference) -> ImageState | None:
    """The stored state of an image, or ``None`` if it was never pulled."""
    csum = repo.try_resolve_rev(image_ref(image))
    return state_of_commit(repo, csum) if csum else None


def state_of_commit(repo: Repo, csum: Checksum) -> ImageState | None:
    """The container metadata of a merge commit, or ``None`` for a commit without it."""
    c = repo.read_commit(csum)
    meta = dict(c.metadata)

    def s(key: str) -> str | None:
        v = meta.get(key)
        return v.value if isinstance(v, Variant) and isinstance(v.value, str) else None

    digest = s(MANIFEST_DIGEST_KEY)
    if digest is None:
        return None
    return ImageState(csum, digest, (s(MANIFEST_KEY) or "").encode(), (s(CONFIG_KEY) or "").encode(), c.timestamp)


def image_timestamp(created: str | None) -> int:
    """The commit timestamp of an image: its config's ``created`` (now, if it has none)."""
    if not created:
        return int(time.time())
    text = re.sub(r"(\.\d{1,6})\d*", r"\1", created.replace("Z", "+00:00"))
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return int(time.time())


def merge_layer(merged: MutableTree, layer: MutableTree) -> None:
    """Apply one layer on top of the merge so far (OCI whiteout rules).

    In each directory of the layer: an opaque marker hides everything below it from lower
    layers, ``.wh.NAME`` removes ``NAME`` from lower layers; then the layer's own entries go
    in. A directory that already exists keeps its metadata (ostree's union checkout).
    """
    if OPAQUE in layer.files:
        merged.files.clear()
        merged.dirs.clear()
    for name in layer.files:
        if name.startswith(WHITEOUT) and name != OPAQUE:
            hidden = name[len(WHITEOUT) :]
            merged.files.pop(hidden, None)
            merged.dirs.pop(hidden, None)
    for name, csum in layer.files.items():
        if not name.startswith(WHITEOUT):
            merged.set_file(name, csum)
    for name, sub in layer.dirs.items():
        existed = name in merged.dirs
        target = merged.ensure_dir(name)
        if not existed or target.meta is None:
            target.meta = sub.meta
        merge_layer(target, sub)


def _has_kernel(tree: MutableTree) -> bool:
    node = tree
    for p in ("usr", "lib", "modules"):
        nxt = node.dirs.get(p)
        if nxt is None:
            return False
        node = nxt
    return any("vmlinuz" in kdir.files for kdir in node.dirs.values())


def _canonical_json(data: bytes) -> str:
    return json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"))


def pull_image(
    repo: Repo,
    image: ImageReference,
    *,
    options: RegistryOptions | None = None,
    architecture: str | None = None,
    privileged: bool | None = None,
    source: ImageSource | None = None,
    progress: PullProgress | None = None,
    commit_check: CommitCheck | None = None,
) -> PullResult:
    """Fetch and import ``image`` (see the module docstring).

    ``privileged`` (default: running as root) decides whether device nodes are skipped or refused.
    ``commit_check`` verifies the encapsulated commit (a plain image is then refused).

    Raises:
        ImageError: bad manifest/config, another platform only, no kernel.
        LayerError: an unsafe layer entry or a wrong diff_id.
        RegistryError: HTTP errors, 401 without credentials, a blob with a wrong digest or size.
        SignatureError: ``commit_check`` refused the commit, or the image carries none.
    """
    priv = os.geteuid() == 0 if privileged is None else privileged
    prev = image_state(repo, image)
    own = source is None
    src = source if source is not None else open_source(image, options)
    try:
        fetched, manifest = resolve_manifest(src, architecture)
        if prev is not None and prev.manifest_digest == fetched.digest:
            # Unchanged: bootc fetches neither the config nor any layer.
            if commit_check is not None:
                base = repo.read_commit(prev.commit).parent
                if base is None:
                    raise _not_encapsulated(image)
                check_stored_commit(repo, base, commit_check)
            return PullResult(image, prev, False, 0, len(manifest.layers), src.stats.bytes)
        resolved = resolve_config(src, fetched, manifest, architecture)
        return _Import(repo, image, src, resolved, priv, progress, commit_check).run()
    finally:
        if own:
            src.close()


def _not_encapsulated(image: ImageReference) -> SignatureError:
    return SignatureError(f"image {image.short}", "unsigned", "not an encapsulated ostree image (no "
                          "ostree.final-diffid label), so there is no ostree commit signature to verify",
                          hint="use an image built by 'container encapsulate' from a signed commit, "
                          "or an ostree-image-signed: / ostree-unverified-registry: reference")


def layers_by_diff_id(repo: Repo) -> dict[str, Checksum]:
    """diff_id → layer commit, over every stored image (the fallback for recompressed layers).

    Images whose metadata does not parse are skipped: this is only a cache lookup.
    """
    out: dict[str, Checksum] = {}
    for csum in repo.list_refs(IMAGE_REF_PREFIX.rstrip("/")).values():
        try:
            st = state_of_commit(repo, csum)
            if st is None:
                continue
            manifest = json.loads(st.manifest)
            diff_ids = json.loads(st.config)["rootfs"]["diff_ids"]
            for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
                commit = repo.try_resolve_rev(blob_ref(layer["digest"]))
                if commit is not None and isinstance(diff_id, str):
                    out.setdefault(diff_id, commit)
        except (BootreeError, ValueError, KeyError, TypeError):
            continue
    return out


def _reuse_by_diff_id(repo: Repo, resolved: ResolvedImage, cached: dict[str, Checksum | None]) -> dict[str, Checksum]:
    """Layers missing by digest but stored under another blob digest with the same diff_id."""
    reused: dict[str, Checksum] = {}
    if any(c is None for c in cached.values()):
        by_diff = layers_by_diff_id(repo)
        for desc, diff_id in zip(resolved.manifest.layers, resolved.config.diff_ids, strict=True):
            if cached[desc.digest] is None and diff_id in by_diff:
                cached[desc.digest] = reused[desc.digest] = by_diff[diff_id]
    return reused


def _compression(desc: Descriptor) -> str:
    try:
        return layer_compression(desc.media_type)
    except FormatError as e:
        raise ImageError(str(e)) from None


class _Import:
    """One image import: its layers in order into one transaction (see the module docstring)."""

    def __init__(self, repo: Repo, image: ImageReference, src: ImageSource, resolved: ResolvedImage,
                 privileged: bool, progress: PullProgress | None, commit_check: CommitCheck | None = None) -> None:
        self.repo, self.image, self.src, self.resolved = repo, image, src, resolved
        self.privileged, self.progress, self.commit_check = privileged, progress, commit_check
        self.layout: Layout = parse_layout(resolved.config)
        if commit_check is not None and not self.layout.encapsulated:
            raise _not_encapsulated(image)  # before any layer is fetched
        self.ts = image_timestamp(resolved.config.timestamp)
        self.stats: list[LayerStats] = []
        self.blobs_to_remove: list[Path] = []
        self.imported = 0
        self.base: Checksum | None = None
        self.base_value: Commit | None = None
        self.staged_trees: dict[Checksum, DirTree] = {}

    def run(self) -> PullResult:
        layers = self.resolved.manifest.layers
        cached = {d.digest: self.repo.try_resolve_rev(blob_ref(d.digest)) for d in layers}
        reused = _reuse_by_diff_id(self.repo, self.resolved, cached)
        tasks = {d.digest: (d, LayerTask(d.digest, d.size, self.layout.kind(i).progress_name))
                 for i, d in enumerate(layers) if cached[d.digest] is None}
        if self.progress is not None:
            self.progress.plan(PullPlan(self.resolved.digest, len(layers), sum(d.size for d in layers),
                                        tuple(t for _, t in tasks.values())))
        blobdir = self.repo.path / "tmp" / "bootree-oci"
        os.makedirs(blobdir, 0o700, exist_ok=True)
        partial = (partial_fetcher(self.repo, self.src, {d.digest: i for d, i in
                                                         zip(layers, self.resolved.config.diff_ids, strict=True)})
                   if tasks else None)
        with LayerFetcher(self.src, blobdir, list(tasks.values()), progress=self.progress,
                          partial=partial) as fetcher, \
                self.repo.transaction() as txn:
            for digest, layer_commit in reused.items():
                txn.set_ref(blob_ref(digest), layer_commit)
            with WritePool() as pool:
                derived = self._layers(txn, pool, fetcher, cached)
            if self.progress is not None:
                self.progress.importing(False)
            csum = self._merge(txn, derived)
        if self.progress is not None:
            self.progress.importing(True)
        for p in self.blobs_to_remove:
            p.unlink(missing_ok=True)
        r = self.resolved
        state = ImageState(csum, r.digest, r.manifest_bytes, r.config_bytes, self.ts)
        warnings: tuple[str, ...] = ()
        if r.config.labels.get("containers.bootc") != "1":
            # bootc's require_bootable: a notice, not an error.
            warnings = ("notice: Image is missing label: containers.bootc",)
        return PullResult(self.image, state, True, self.imported, len(layers) - len(tasks), self.src.stats.bytes,
                          tuple(self.stats), warnings, self.base)

    def _layers(self, txn: Transaction, pool: WritePool, fetcher: LayerFetcher,
                cached: dict[str, Checksum | None]) -> list[MutableTree]:
        """Import the missing layers in order; the derived layers' trees, for the merge."""
        derived: list[MutableTree] = []
        trees: dict[str, MutableTree] = {}
        diff_ids = self.resolved.config.diff_ids
        for i, desc in enumerate(self.resolved.manifest.layers):
            kind = self.layout.kind(i)
            csum = cached[desc.digest]
            if kind is LayerKind.DERIVED and desc.digest in trees:
                derived.append(trees[desc.digest])
                continue
            if csum is None:
                blob = fetcher.get(desc)
                self.imported += 1
                if blob.downloaded:
                    self.blobs_to_remove.append(blob.path)
                if blob.verify is not None:
                    self.src.stats.count(desc.digest, desc.size)
                compression = blob.compression or _compression(desc)
                if kind is LayerKind.DERIVED:
                    # ostree-ext keeps non-/usr top-level directories only where the root is
                    # transient: always for a plain image, not over an encapsulated base here.
                    tree, st = import_layer(txn, blob.path, compression, diff_ids[i],
                                            privileged=self.privileged, allow_nonusr=not self.layout.encapsulated,
                                            pool=pool, verify=blob.verify)
                    self.stats.append(st)
                    root_tree, root_meta = tree.write(txn)
                    csum = txn.write_commit(Commit(root_tree=root_tree, root_meta=root_meta, timestamp=self.ts))
                    trees[desc.digest] = tree
                else:
                    res = import_object_layer(txn, blob.path, compression, diff_ids[i],
                                              commit_layer=kind is LayerKind.COMMIT, expected_commit=self.layout.commit,
                                              pool=pool, verify=blob.verify,
                                              commit_check=self.commit_check if kind is LayerKind.COMMIT else None)
                    if kind is LayerKind.COMMIT:
                        assert res.commit is not None
                        csum, self.base_value = res.commit, res.commit_value
                        self.staged_trees.update(res.dirtrees)
                    else:
                        csum = object_set_commit(txn, res.objects)
                txn.set_ref(blob_ref(desc.digest), csum)
                cached[desc.digest] = csum
            elif kind is LayerKind.DERIVED:
                c = self.repo.read_commit(csum)
                tree = trees[desc.digest] = MutableTree()
                tree.overlay_commit_tree(self.repo.reader, c.root_tree, c.root_meta)
            if kind is LayerKind.COMMIT:
                self.base = csum
                if self.base_value is None:
                    if self.commit_check is not None:
                        check_stored_commit(self.repo, csum, self.commit_check)
                    self.base_value = self.repo.read_commit(csum)
            elif kind is LayerKind.DERIVED:
                derived.append(trees[desc.digest])
        return derived

    def _merge(self, txn: Transaction, derived: list[MutableTree]) -> Checksum:
        """The merge commit: the encapsulated commit's tree (if any), then each derived layer."""
        merged = MutableTree()
        if self.base is not None:
            assert self.base_value is not None
            if self.layout.commit is not None and self.base != self.layout.commit:
                raise ImageError(f"{self.image.short}: the commit layer holds {self.base}, "
                                 f"the {COMMIT_LABEL} label says {self.layout.commit}")
            verify_complete(txn, self.repo, self.base, self.base_value, self.staged_trees)
            merged.overlay_commit_tree(StagedReader(self.repo, self.staged_trees), self.base_value.root_tree,
                                       self.base_value.root_meta)
        for tree in derived:
            merge_layer(merged, tree)
        return write_merge_commit(txn, self.image, self.resolved, merged, self.base, self.ts)


def write_merge_commit(txn: Transaction, image: ImageReference, resolved: ResolvedImage, merged: MutableTree,
                       base: Checksum | None, timestamp: int) -> Checksum:
    """Write the image's merge commit of the tree ``merged`` and point the image ref at it.

    Shared by the layer import and the delta path (:mod:`bootree.oci.deltapull`), so both give
    the same commit, checksum for checksum: metadata, parent ``base`` (the encapsulated
    commit) and ``timestamp`` (the config's ``created``: :func:`image_timestamp`).

    Raises:
        ImageError: the tree has no kernel.
    """
    if not _has_kernel(merged):
        raise ImageError(f"{image.short}: image has no kernel (no /usr/lib/modules/*/vmlinuz)")
    root_tree, root_meta = merged.write(txn)
    meta: list[tuple[str, Variant]] = [
        (MANIFEST_DIGEST_KEY, Variant("s", resolved.digest)),
        (MANIFEST_KEY, Variant("s", _canonical_json(resolved.manifest_bytes))),
        (CONFIG_KEY, Variant("s", _canonical_json(resolved.config_bytes))),
        (IMPORTER_KEY, Variant("s", f"bootree {__version__}")),
    ]
    if resolved.config.version:
        meta.append(("version", Variant("s", resolved.config.version)))
    commit = Commit(root_tree=root_tree, root_meta=root_meta, parent=base,
                    timestamp=timestamp, metadata=tuple(meta),
                    subject=f"Merge of {image}")
    csum = txn.write_commit(commit)
    txn.set_ref(image_ref(image), csum)
    return csum
