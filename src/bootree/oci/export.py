"""``container encapsulate``: a commit exported as a bootable OCI image (ostree-ext's verb).

Layer: oci. What the image holds, as ostree-ext's ``encapsulate`` writes it (so bootc imports
it as an encapsulated ostree image, and any OCI tool sees a plain filesystem image):

* layers: the *commit layer* first (commit, dirtree/dirmeta objects, directories; see
  :mod:`~bootree.oci.tarexport`), then one layer per chunk (:mod:`~bootree.oci.chunking`), each
  with an ``ostree.components`` annotation listing its packages;
* config labels: ``ostree.commit``, ``ostree.final-diffid`` (the diff_id of the last layer that
  belongs to the commit), ``version`` and ``org.opencontainers.image.version`` from the commit's
  ``version``, ``ostree.linux`` when the commit names one, ``ostree.bootable=true`` and
  ``containers.bootc=1`` when the commit is marked bootable or holds a kernel
  (``usr/lib/modules/*/vmlinuz``), then the caller's ``--label``s; the manifest carries the same
  labels as annotations;
* ``created`` is the commit's timestamp, the history has one entry per layer.

Every document is canonical JSON and every layer reproducible, so the same commit gives the
same manifest digest. Layers are produced on ``jobs`` threads (compression and hashing release
the GIL), each streamed to its blob file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootree import _fs
from bootree.errors import ImageError
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.oci import Compression, digest_of
from bootree.oci.chunking import Chunk, Chunking, plan_chunks, read_package_db
from bootree.oci.push import BlobToPush, PushOptions, PushResult, push_blobs
from bootree.oci.reference import ImageReference, Transport
from bootree.oci.registry import RegistryOptions
from bootree.oci.source import host_architecture
from bootree.oci.tarexport import BlobSink, LayerBlob, OstreeTarWriter
from bootree.oci.zchunked import ZSTD_CHUNKED
from bootree.oci.zchunkwrite import ChunkedSink
from bootree.repo import Repo

__all__ = [
    "EncapsulateOptions",
    "EncapsulateResult",
    "ExportedImage",
    "encapsulate",
    "encapsulate_to_layout",
    "write_image",
    "write_layout_index",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
COMMIT_LABEL = "ostree.commit"
DIFFID_LABEL = "ostree.final-diffid"
BOOTC_LABEL = "containers.bootc"
BOOTABLE_LABEL = "ostree.bootable"
VERSION_LABEL = "org.opencontainers.image.version"
LEGACY_VERSION_LABEL = "version"
COMPONENTS_ANNOTATION = "ostree.components"
REF_NAME = "org.opencontainers.image.ref.name"
_KERNEL = re.compile(r"usr/lib/modules/[^/]+/vmlinuz")

ProgressFn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class EncapsulateOptions:
    """How to export: labels, layer split, compression, parallelism."""

    labels: dict[str, str] = field(default_factory=dict)
    max_layers: int | None = None
    compression: str = Compression.GZIP
    level: int | None = None
    package_db: Path | None = None
    architecture: str | None = None
    jobs: int = 2


@dataclass(frozen=True, slots=True)
class ExportedImage:
    """An image written to a blob directory: its manifest (exact bytes) and what it references."""

    manifest_digest: str
    manifest: bytes
    config_digest: str
    config: bytes
    layers: tuple[LayerBlob, ...]
    labels: dict[str, str]
    blobdir: Path
    layer_objects: tuple[frozenset[Checksum], ...] = ()
    """The content objects each layer carries, in layer order (a delta artifact's layer map)."""

    @property
    def manifest_size(self) -> int:
        """Size of the manifest bytes."""
        return len(self.manifest)


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _meta_str(meta: dict[str, Variant], key: str) -> str | None:
    v = meta.get(key)
    return v.value if isinstance(v, Variant) and isinstance(v.value, str) else None


def _store_blob(blobdir: Path, data: bytes) -> str:
    digest = digest_of(data)
    path = blobdir / digest[7:]
    if not path.exists():
        _fs.write_atomic(path, data)
    return digest


def _build_layer(repo: Repo, blobdir: Path, options: EncapsulateOptions, chunk: Chunk,
                 commit: Checksum | None) -> LayerBlob:
    sink = (ChunkedSink(blobdir, options.level) if options.compression == ZSTD_CHUNKED
            else BlobSink(blobdir, options.compression, options.level))
    try:
        w = OstreeTarWriter(repo, sink)
        if commit is not None:
            w.commit_structure(commit)
        else:
            w.repo_structure()
        for csum, (_, paths) in chunk.objects.items():
            w.content(csum, paths)
        w.close()
        return sink.finish()
    except BaseException:
        sink.abort()
        raise


def _labels(repo: Repo, commit: Checksum, plan: Chunking, options: EncapsulateOptions) -> dict[str, str]:
    c = repo.read_commit(commit)
    meta = dict(c.metadata)
    labels: dict[str, str] = {}
    version = _meta_str(meta, "version")
    if version is not None:
        labels[VERSION_LABEL] = version
        labels[LEGACY_VERSION_LABEL] = version
    linux = _meta_str(meta, "ostree.linux")
    if linux is not None:
        labels["ostree.linux"] = linux
    bootable = meta.get("ostree.bootable")
    has_kernel = any(_KERNEL.fullmatch(p) for ch in (*plan.chunks, plan.remainder)
                     for _, paths in ch.objects.values() for p in paths)
    if (isinstance(bootable, Variant) and bootable.value is True) or has_kernel:
        labels[BOOTABLE_LABEL] = "true"
        labels[BOOTC_LABEL] = "1"
    labels[COMMIT_LABEL] = commit
    return labels


def write_image(repo: Repo, rev: str, blobdir: Path, options: EncapsulateOptions | None = None,
                progress: ProgressFn | None = None) -> ExportedImage:
    """Export ``rev`` into ``blobdir`` (a ``blobs/sha256`` directory): layers, config, manifest.

    Raises:
        RepoError: for an unknown revision or a damaged commit.
        ImageError: for bad options (``--max-layers 0``, an unknown compression, a package db
            directory without file lists).
    """
    options = options or EncapsulateOptions()
    commit = repo.resolve_rev(rev)
    c = repo.read_commit(commit)
    chunked = options.max_layers is not None and options.max_layers > 1
    db = read_package_db(repo, commit, options.package_db) if chunked else None
    plan = plan_chunks(repo, commit, options.max_layers, package_db=db)
    if progress:
        src = db.source if db is not None else "none"
        progress(f"{len(plan.chunks) + 1} layers (package database: {src})")
    _fs.makedirs(blobdir)
    jobs = max(1, options.jobs)
    # The largest layers first, so two threads finish at about the same time.
    work: list[tuple[Chunk, Checksum | None]] = [(plan.remainder, commit), *((ch, None) for ch in plan.chunks)]
    order = sorted(range(len(work)), key=lambda i: -work[i][0].size)
    results: dict[int, LayerBlob] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {i: pool.submit(_build_layer, repo, blobdir, options, *work[i]) for i in order}
        for i in order:
            results[i] = futures[i].result()
            if progress:
                progress(f"layer {work[i][0].name}: {results[i].digest} ({results[i].size} bytes)")
    layers = tuple(results[i] for i in range(len(work)))
    labels = _labels(repo, commit, plan, options)
    labels[DIFFID_LABEL] = layers[-1].diff_id
    labels.update(options.labels)
    created = datetime.fromtimestamp(c.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    subject = c.subject or f"ostree export of commit {commit}"
    history = [{"created": created, "created_by": subject}]
    history += [{"created": created, "created_by": ch.name} for ch in plan.chunks]
    config = _canonical({
        "architecture": options.architecture or host_architecture(),
        "os": "linux",
        "created": created,
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
        "history": history,
    })
    config_digest = _store_blob(blobdir, config)
    layer_descs: list[dict[str, Any]] = []
    for i, blob in enumerate(layers):
        d: dict[str, Any] = {"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size}
        annotations = dict(blob.annotations)
        if i > 0:
            annotations[COMPONENTS_ANNOTATION] = ",".join(work[i][0].components)
        if annotations:
            d["annotations"] = annotations
        layer_descs.append(d)
    manifest = _canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": layer_descs,
        "annotations": labels,
    })
    manifest_digest = _store_blob(blobdir, manifest)
    _fs.fsync_dir(blobdir)
    return ExportedImage(manifest_digest, manifest, config_digest, config, layers, labels, blobdir,
                         tuple(frozenset(ch.objects) for ch, _ in work))


def write_layout_index(layout: Path, image: ExportedImage, tag: str | None, architecture: str) -> None:
    """Point ``index.json`` of an OCI layout at ``image`` (under ``tag``, else as its only image).

    Raises:
        ImageError: for an ``index.json`` that does not parse.
    """
    _fs.write_atomic(layout / "oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))
    index_path = layout / "index.json"
    manifests: list[dict[str, Any]] = []
    if tag is not None and index_path.exists():
        try:
            doc = json.loads(index_path.read_bytes())
            manifests = [m for m in doc.get("manifests", [])
                         if (m.get("annotations") or {}).get(REF_NAME) != tag]
        except (ValueError, AttributeError) as e:
            raise ImageError(f"{index_path}: cannot parse the existing index: {e}") from None
    desc: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": image.manifest_digest, "size": image.manifest_size,
                            "platform": {"architecture": architecture, "os": "linux"}}
    if tag is not None:
        desc["annotations"] = {REF_NAME: tag}
    manifests.append(desc)
    _fs.write_atomic(index_path, _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))


def encapsulate_to_layout(repo: Repo, rev: str, image: ImageReference, options: EncapsulateOptions | None = None,
                          progress: ProgressFn | None = None) -> ExportedImage:
    """Export ``rev`` to an ``oci:DIR[:TAG]`` layout (created if missing).

    Raises:
        ImageError: for a reference that is not ``oci:``, see also :func:`write_image`.
    """
    if image.transport is not Transport.OCI:
        raise ImageError(f"{image} is not an OCI layout reference (oci:DIR[:TAG])")
    options = options or EncapsulateOptions()
    path, tag = image.layout_path_and_tag()
    layout = Path(path)
    _fs.makedirs(layout)
    exported = write_image(repo, rev, layout / "blobs" / "sha256", options, progress)
    write_layout_index(layout, exported, tag, options.architecture or host_architecture())
    _fs.fsync_dir(layout)
    return exported


def scratch_dir() -> Path:
    """A private directory for an image on its way to a registry (``$TMPDIR``, else /var/tmp)."""
    base = os.environ.get("TMPDIR") or "/var/tmp"
    return Path(tempfile.mkdtemp(prefix="bootree-encapsulate-", dir=base))


def remove_scratch(path: Path) -> None:
    """Remove a :func:`scratch_dir`."""
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class EncapsulateResult:
    """An exported image and, for a registry destination, what the push did."""

    image: ExportedImage
    push: PushResult | None = None


def encapsulate(repo: Repo, rev: str, dest: ImageReference, options: EncapsulateOptions | None = None, *,
                registry: RegistryOptions | None = None, push: PushOptions | None = None,
                progress: ProgressFn | None = None) -> EncapsulateResult:
    """Export ``rev`` to ``oci:DIR[:TAG]`` or push it to a registry (``docker://HOST/REPO:TAG``).

    A registry push goes through a private scratch layout that is removed afterwards.

    Raises:
        ImageError: for other transports and bad options; PushError for a refused push.
    """
    if dest.transport is Transport.OCI:
        return EncapsulateResult(encapsulate_to_layout(repo, rev, dest, options, progress))
    if dest.transport is not Transport.REGISTRY:
        raise ImageError(f"cannot write images to transport {dest.transport.value!r}",
                         hint="use oci:DIR[:TAG] or docker://HOST/REPO:TAG")
    ref = dest.docker
    scratch = scratch_dir()
    try:
        img = write_image(repo, rev, scratch, options, progress)
        blobs = [BlobToPush(img.config_digest, len(img.config), scratch / img.config_digest[7:])]
        blobs += [BlobToPush(x.digest, x.size, x.path) for x in img.layers]
        result = push_blobs(ref, blobs, img.manifest, img.manifest_digest, OCI_MANIFEST, options=registry,
                            push_options=push, progress=progress)
        return EncapsulateResult(img, result)
    finally:
        remove_scratch(scratch)
