"""Pull an image into the repository as ostree-ext's container store lays it out.

Layer: oci. :func:`pull_image` is ``ImageImporter::prepare`` + ``import`` (bootc-oci.md §2.3):

1. resolve the manifest (and the host platform's entry of an index) and the config;
2. if the image ref already holds that manifest digest: nothing to do (no blob is fetched);
3. every layer without a ``ostree/container/blob/<esc(digest)>`` commit is downloaded to the
   repository's ``tmp/bootree-oci/`` (verified; an interrupted download resumes there) and
   imported into a commit of its own; layers already present are neither fetched nor read
   beyond their dirtrees;
4. the layers are merged in order, whiteouts and opaque directories acting on lower layers
   only; the image must hold a kernel (``usr/lib/modules/*/vmlinuz``);
5. the merge commit carries ``ostree.manifest-digest``, ``ostree.manifest``,
   ``ostree.container.image-config`` and ``ostree.importer.version`` and goes to
   ``ostree/container/image/<esc(imgref)>``.

Steps 3–5 run in one transaction: if any layer is unsafe, any digest wrong, or the kernel
missing, no object and no ref is published.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bootree import __version__
from bootree.errors import BootreeError, FormatError, ImageError
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit
from bootree.format.oci import layer_compression
from bootree.oci.layer import LayerStats, import_layer
from bootree.oci.reference import IMAGE_REF_PREFIX, ImageReference, blob_ref, image_ref
from bootree.oci.registry import RegistryOptions
from bootree.oci.source import ImageSource, ResolvedImage, open_source, resolve_config, resolve_manifest
from bootree.repo import Repo
from bootree.repo.mtree import MutableTree

__all__ = ["ImageState", "PullResult", "image_state", "merge_layer", "pull_image"]

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


def _timestamp(created: str | None) -> int:
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


ProgressFn = Callable[[str], None]


def pull_image(
    repo: Repo,
    image: ImageReference,
    *,
    options: RegistryOptions | None = None,
    architecture: str | None = None,
    privileged: bool | None = None,
    source: ImageSource | None = None,
    progress: ProgressFn | None = None,
) -> PullResult:
    """Fetch and import ``image`` (see the module docstring).

    ``privileged`` (default: running as root) decides whether device nodes are skipped or refused.

    Raises:
        ImageError: bad manifest/config, another platform only, no kernel.
        LayerError: an unsafe layer entry or a wrong diff_id.
        RegistryError: HTTP errors, 401 without credentials, a blob with a wrong digest or size.
    """
    priv = os.geteuid() == 0 if privileged is None else privileged
    prev = image_state(repo, image)
    own = source is None
    src = source if source is not None else open_source(image, options)
    try:
        fetched, manifest = resolve_manifest(src, architecture)
        if prev is not None and prev.manifest_digest == fetched.digest:
            # Unchanged: bootc fetches neither the config nor any layer.
            return PullResult(image, prev, False, 0, len(manifest.layers), src.stats.bytes)
        resolved = resolve_config(src, fetched, manifest, architecture)
        return _import(repo, image, src, resolved, priv, progress)
    finally:
        if own:
            src.close()


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


def _import(repo: Repo, image: ImageReference, src: ImageSource, resolved: ResolvedImage,
            privileged: bool, progress: ProgressFn | None) -> PullResult:
    blobdir = repo.path / "tmp" / "bootree-oci"
    os.makedirs(blobdir, 0o700, exist_ok=True)
    layers = resolved.manifest.layers
    cached = {d.digest: repo.try_resolve_rev(blob_ref(d.digest)) for d in layers}
    reused: dict[str, Checksum] = {}
    if any(c is None for c in cached.values()):
        by_diff = layers_by_diff_id(repo)
        for desc, diff_id in zip(layers, resolved.config.diff_ids, strict=True):
            if cached[desc.digest] is None and diff_id in by_diff:
                # Same content under another blob digest (recompressed): reuse its commit.
                cached[desc.digest] = reused[desc.digest] = by_diff[diff_id]
    needed = [d for d in layers if cached[d.digest] is None]
    if progress:
        total = sum(d.size for d in dict.fromkeys(needed))
        progress(f"layers already present: {len(layers) - len(needed)}; layers needed: {len(needed)} ({total} bytes)")
    merged = MutableTree()
    fetched = 0
    stats: list[LayerStats] = []
    ts = _timestamp(resolved.config.timestamp)
    done: dict[str, MutableTree] = {}
    blobs_to_remove = []
    with repo.transaction() as txn:
        for digest, layer_commit in reused.items():
            txn.set_ref(blob_ref(digest), layer_commit)
        for i, desc in enumerate(layers):
            tree = done.get(desc.digest)
            csum = cached[desc.digest]
            if tree is None and csum is not None:
                c = repo.read_commit(csum)
                tree = MutableTree()
                tree.overlay_commit_tree(repo.reader, c.root_tree, c.root_meta)
            if tree is None:
                try:
                    compression = layer_compression(desc.media_type)
                except FormatError as e:
                    raise ImageError(str(e)) from None
                path = blobdir / desc.digest.replace(":", "-")
                if not path.exists():
                    src.fetch_blob(desc, path)
                    fetched += 1
                if progress:
                    progress(f"importing layer {desc.digest} ({desc.size} bytes)")
                tree, st = import_layer(txn, path, compression, resolved.config.diff_ids[i], privileged=privileged)
                stats.append(st)
                root_tree, root_meta = tree.write(txn)
                lcsum = txn.write_commit(Commit(root_tree=root_tree, root_meta=root_meta, timestamp=ts))
                txn.set_ref(blob_ref(desc.digest), lcsum)
                blobs_to_remove.append(path)
            done[desc.digest] = tree
            merge_layer(merged, tree)
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
        commit = Commit(root_tree=root_tree, root_meta=root_meta, timestamp=ts, metadata=tuple(meta),
                        subject=f"Merge of {image}")
        csum = txn.write_commit(commit)
        txn.set_ref(image_ref(image), csum)
    for p in blobs_to_remove:
        p.unlink(missing_ok=True)
    state = ImageState(csum, resolved.digest, resolved.manifest_bytes, resolved.config_bytes, ts)
    warnings: tuple[str, ...] = ()
    if resolved.config.labels.get("containers.bootc") != "1":
        # bootc's require_bootable: a notice, not an error.
        warnings = ("notice: Image is missing label: containers.bootc",)
    return PullResult(image, state, True, fetched, len(layers) - len(needed), src.stats.bytes, tuple(stats),
                      warnings)
