"""Static deltas between container images, as OCI 1.1 artifacts next to the image they lead to.

Layer: oci. ``container encapsulate --delta-from=IMAGE`` publishes, beside the new image, an
artifact manifest (an image manifest with ``artifactType``, the empty config and a ``subject``:
the new image's manifest) holding two blobs:

* the delta (:data:`DELTA_MEDIA_TYPE`): one self-contained superblock file from the previous
  image's ostree commit to the new one, every part inline and no fallback objects, as an
  offline update file is (bootree's format by default, ostree's with ``--delta-format=ostree``;
  signed when a key is given, :mod:`bootree.sign.delta`);
* the layer map (:data:`LAYERMAP_MEDIA_TYPE`): which layer of the new image carries each of its
  content objects, one small number per object in checksum order. It lets the client write the
  same ``ostree/container/blob/…`` refs a layer import writes, so that a later layer fetch
  skips the layers it already has. The delta's superblock names the map's digest
  (:data:`LAYERMAP_KEY`), so a signature over the delta covers the map as well.

Annotations name both images' manifest digests and commits (:data:`FROM_DIGEST` …). A client
finds the artifact with the referrers API or its tag fallback (:mod:`bootree.oci.referrers`),
and uses it only when the from-digest is the image it runs (:mod:`bootree.oci.deltapull`).
Nothing in an artifact is trusted: the delta's ``to`` commit must be the new image's
``ostree.commit`` label, and every object is verified as it is written.

This module holds the format (build and parse, pure) and the publishing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bootree import _fs
from bootree.errors import FormatError, ImageError, InvalidChecksum
from bootree.format.checksum import Checksum, ObjectType, parse_checksum
from bootree.format.oci import OCI_MANIFEST, Descriptor, digest_of
from bootree.oci.push import BlobToPush, PushOptions, RegistryPusher, push_blobs
from bootree.oci.reference import DockerReference, ImageReference, Transport
from bootree.oci.referrers import Referrer, announce_referrer
from bootree.oci.registry import RegistryOptions
from bootree.oci.source import open_source, resolve
from bootree.repo import Repo

if TYPE_CHECKING:  # the publishing side only: the delta generator loads numpy
    from bootree.oci.export import ExportedImage

__all__ = [
    "ARTIFACT_TYPE",
    "DELTA_MEDIA_TYPE",
    "LAYERMAP_KEY",
    "LAYERMAP_MEDIA_TYPE",
    "DeltaArtifact",
    "LayerMap",
    "PreviousImage",
    "PublishedDelta",
    "build_artifact",
    "parse_artifact",
    "publish_delta",
    "resolve_previous",
]

ARTIFACT_TYPE = "application/vnd.bootree.image-delta.v1"
DELTA_MEDIA_TYPE = "application/vnd.bootree.static-delta.superblock.v1"
LAYERMAP_MEDIA_TYPE = "application/vnd.bootree.image-delta.layermap.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"

FROM_DIGEST = "org.bootree.delta.from-manifest"
FROM_COMMIT = "org.bootree.delta.from-commit"
TO_DIGEST = "org.bootree.delta.to-manifest"
TO_COMMIT = "org.bootree.delta.to-commit"
FORMAT = "org.bootree.delta.format"

COMMIT_LABEL = "ostree.commit"

#: Superblock metadata key naming the artifact's layer map by digest. The superblock's
#: signature covers its metadata, so a signed delta vouches for its layer map too: a forged
#: artifact pairing a genuine signed delta with another layer map is refused before anything
#: is applied (:mod:`bootree.oci.deltapull`).
LAYERMAP_KEY = "bootree.image-delta.layer-map"

#: Signs a finished superblock (``static-delta generate --sign``).
Signer = Callable[[bytes], bytes]


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class LayerMap:
    """Which layer carries each content object: the i-th assignment is for the i-th in checksum order."""

    layers: tuple[str, ...]
    assignment: bytes
    """One byte per object (two, big-endian, past 256 layers)."""

    @property
    def width(self) -> int:
        """Bytes per object."""
        return 1 if len(self.layers) <= 256 else 2

    @classmethod
    def build(cls, layers: tuple[str, ...], objects: tuple[frozenset[Checksum], ...]) -> LayerMap:
        """The map of an exported image (its layer digests and the objects of each layer).

        Raises:
            ImageError: an object in two layers (the map could not say which).
        """
        owner: dict[Checksum, int] = {}
        for i, objs in enumerate(objects):
            for c in objs:
                if owner.setdefault(c, i) != i:
                    raise ImageError(f"content object {c} is in layers {owner[c]} and {i}")
        width = 1 if len(layers) <= 256 else 2
        return cls(layers, b"".join(owner[c].to_bytes(width, "big") for c in sorted(owner)))

    def to_bytes(self) -> bytes:
        """The blob: JSON with the layer digests and the zlib-compressed assignment."""
        return _canonical({"version": 1, "layers": list(self.layers), "width": self.width,
                           "objects": len(self.assignment) // self.width,
                           "assignment": base64.b64encode(zlib.compress(self.assignment, 9)).decode()})

    @classmethod
    def from_bytes(cls, data: bytes) -> LayerMap:
        """Parse a layer map blob (bounded: the assignment may not inflate past its count).

        Raises:
            FormatError: anything malformed.
        """
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise FormatError(f"layer map: not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise FormatError("layer map: unknown version")
        layers, count, width, text = doc.get("layers"), doc.get("objects"), doc.get("width"), doc.get("assignment")
        if (not isinstance(layers, list) or not layers or not all(isinstance(x, str) for x in layers)
                or not isinstance(count, int) or isinstance(count, bool) or count < 0 or not isinstance(text, str)):
            raise FormatError("layer map: malformed fields")
        empty = cls(tuple(layers), b"")
        if width != empty.width:
            raise FormatError(f"layer map: width {width!r} for {len(layers)} layers")
        try:
            d = zlib.decompressobj()
            raw = d.decompress(base64.b64decode(text, validate=True), count * empty.width + 1)
        except (ValueError, zlib.error) as e:
            raise FormatError(f"layer map: bad assignment ({e})") from None
        if len(raw) != count * empty.width or not d.eof:
            raise FormatError(f"layer map: the assignment is not {count} objects")
        lm = cls(tuple(layers), raw)
        if any(i >= len(layers) for i in lm.indexes()):
            raise FormatError("layer map: an object is assigned to a layer that does not exist")
        return lm

    def indexes(self) -> list[int]:
        """The layer index of each object, in checksum order."""
        w = self.width
        return [int.from_bytes(self.assignment[i : i + w], "big") for i in range(0, len(self.assignment), w)]


@dataclass(frozen=True, slots=True)
class DeltaArtifact:
    """A parsed delta artifact manifest."""

    digest: str
    subject: Descriptor
    delta: Descriptor
    layer_map: Descriptor
    from_digest: str
    from_commit: Checksum
    to_digest: str
    to_commit: Checksum
    format: str


def build_artifact(subject: Descriptor, delta: Descriptor, layer_map: Descriptor, annotations: dict[str, str]) -> bytes:
    """The artifact manifest's exact bytes (canonical JSON)."""
    return _canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": digest_of(EMPTY_BLOB), "size": len(EMPTY_BLOB)},
        "layers": [delta.to_json(), layer_map.to_json()],
        "subject": subject.to_json(),
        "annotations": annotations,
    })


def _checksum(annotations: dict[str, str], key: str) -> Checksum:
    try:
        return parse_checksum(annotations[key])
    except (KeyError, InvalidChecksum):
        raise FormatError(f"delta artifact: annotation {key} is missing or not a commit checksum") from None


def parse_artifact(data: bytes, digest: str) -> DeltaArtifact:
    """Parse and check a delta artifact manifest (``digest``: its already-verified digest).

    Raises:
        FormatError: another artifact type, a missing subject, blob or annotation.
    """
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise FormatError(f"delta artifact: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("artifactType") != ARTIFACT_TYPE or doc.get("schemaVersion") != 2:
        raise FormatError("delta artifact: not a bootree image delta")
    if doc.get("subject") is None:
        raise FormatError("delta artifact: no subject")
    subject = Descriptor.from_json(doc["subject"], "delta artifact subject")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise FormatError("delta artifact: no layers")
    descs = [Descriptor.from_json(x, "delta artifact blob") for x in layers]
    deltas = [d for d in descs if d.media_type == DELTA_MEDIA_TYPE]
    maps = [d for d in descs if d.media_type == LAYERMAP_MEDIA_TYPE]
    if len(deltas) != 1 or len(maps) != 1:
        raise FormatError("delta artifact: expected one delta and one layer map")
    ann = doc.get("annotations")
    if not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values()):
        raise FormatError("delta artifact: no annotations")
    from_digest, to_digest = ann.get(FROM_DIGEST, ""), ann.get(TO_DIGEST, "")
    if not from_digest.startswith("sha256:") or to_digest != subject.digest:
        raise FormatError("delta artifact: its annotations do not match its subject")
    return DeltaArtifact(digest, subject, deltas[0], maps[0], from_digest, _checksum(ann, FROM_COMMIT), to_digest,
                         _checksum(ann, TO_COMMIT), ann.get(FORMAT, ""))


# --- publishing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviousImage:
    """The image a delta starts from: its manifest digest and its ostree commit (local)."""

    reference: str
    digest: str
    commit: Checksum


@dataclass(frozen=True, slots=True)
class PublishedDelta:
    """What :func:`publish_delta` pushed."""

    digest: str
    delta_size: int
    layer_map_size: int
    from_digest: str
    found_by: str
    """``api``, ``tag`` or ``present`` (see :func:`bootree.oci.referrers.announce_referrer`), or ``layout``."""


def resolve_previous(repo: Repo, text: str, options: RegistryOptions | None = None) -> PreviousImage:
    """``--delta-from=IMAGE``: the previous image's digest and commit, which must be in ``repo``.

    Raises:
        ImageError: a plain (not encapsulated) image, or its commit is not in the repository.
    """
    ref = ImageReference.parse(text)
    src = open_source(ref, options)
    try:
        resolved = resolve(src)
    finally:
        src.close()
    label = resolved.config.labels.get(COMMIT_LABEL)
    if not label:
        raise ImageError(f"{ref}: not an encapsulated ostree image (no {COMMIT_LABEL} label): no delta from it")
    try:
        commit = parse_checksum(label)
    except InvalidChecksum:
        raise ImageError(f"{ref}: malformed {COMMIT_LABEL} label {label!r}") from None
    if not repo.has_object(ObjectType.COMMIT, commit) or repo.is_partial(commit):
        raise ImageError(f"the commit {commit} of {ref} is not (wholly) in the repository",
                         hint="a delta is generated from the previous image's commit: keep it, or pull it first")
    return PreviousImage(str(ref), resolved.digest, commit)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def publish_delta(repo: Repo, image: ExportedImage, dest: ImageReference, previous: PreviousImage, *,
                  scratch: Path, fmt: str = "bootree", sign: Signer | None = None,
                  registry: RegistryOptions | None = None, push: PushOptions | None = None) -> PublishedDelta:
    """Generate the delta ``previous`` → ``image`` and publish it as a referrer of ``image``.

    ``dest`` is where ``image`` went (``docker://…`` or ``oci:DIR[:TAG]``); ``sign`` signs the
    superblock; ``scratch`` is a private directory for the files (the caller removes it).

    Raises:
        ImageError: the image has no commit label or layer list; PushError: a refused push.
    """
    if not image.layer_objects or COMMIT_LABEL not in image.labels:
        raise ImageError("the image was not exported by this bootree: no delta can be published for it")
    if dest.transport is Transport.OCI and dest.layout_path_and_tag()[1] is None:
        raise ImageError(f"{dest}: a layout that holds a delta holds two manifests: name the image's tag",
                         hint="use oci:DIR:TAG")
    to_commit = parse_checksum(image.labels[COMMIT_LABEL])
    delta_path = scratch / "delta.superblock"
    from bootree.delta.compile import generate_delta  # numpy and the generator: publishing only
    from bootree.delta.parts import DeltaOptions

    map_path = scratch / "layermap.json"
    map_path.write_bytes(LayerMap.build(tuple(x.digest for x in image.layers), image.layer_objects).to_bytes())
    options = DeltaOptions(format=fmt, inline=True, min_fallback_size=0,
                           metadata=((LAYERMAP_KEY, _file_digest(map_path)),))
    generate_delta(repo, to_commit, from_commit=previous.commit, options=options, filename=delta_path, sign=sign)
    empty = scratch / "empty.json"
    empty.write_bytes(EMPTY_BLOB)
    blobs = [BlobToPush(_file_digest(p), p.stat().st_size, p) for p in (delta_path, map_path, empty)]
    delta_desc = Descriptor(DELTA_MEDIA_TYPE, blobs[0].digest, blobs[0].size)
    map_desc = Descriptor(LAYERMAP_MEDIA_TYPE, blobs[1].digest, blobs[1].size)
    subject = Descriptor(OCI_MANIFEST, image.manifest_digest, image.manifest_size)
    annotations = {FROM_DIGEST: previous.digest, FROM_COMMIT: str(previous.commit), TO_DIGEST: image.manifest_digest,
                   TO_COMMIT: str(to_commit), FORMAT: fmt}
    manifest = build_artifact(subject, delta_desc, map_desc, annotations)
    digest = digest_of(manifest)
    referrer = Referrer(Descriptor(OCI_MANIFEST, digest, len(manifest)), ARTIFACT_TYPE, annotations)
    if dest.transport is Transport.OCI:
        _to_layout(dest, blobs, manifest, digest, referrer)
        found = "layout"
    else:
        ref = dest.docker
        by_digest = DockerReference.parse(f"{ref.registry_host}/{ref.repository}@{digest}")
        push_blobs(by_digest, blobs, manifest, digest, OCI_MANIFEST, options=registry, push_options=push)
        pusher = RegistryPusher(ref.registry_host, registry)
        with contextlib.closing(pusher):
            found = announce_referrer(pusher, ref.repository, image.manifest_digest, referrer)
    return PublishedDelta(digest, delta_desc.size, map_desc.size, previous.digest, found)


def _to_layout(dest: ImageReference, blobs: list[BlobToPush], manifest: bytes, digest: str, referrer: Referrer) -> None:
    """An ``oci:`` layout: the blobs and the artifact manifest, listed in ``index.json`` without a tag.

    Image-layout 1.1 finds referrers by their ``subject`` among the index's manifests; the
    entry carries ``artifactType`` and the annotations, as the referrers API lists it.
    """
    root = Path(dest.layout_path_and_tag()[0])
    blobdir = root / "blobs" / "sha256"
    for b in blobs:
        target = blobdir / b.digest.removeprefix("sha256:")
        if not target.exists():
            _fs.write_atomic(target, b.path.read_bytes())
    _fs.write_atomic(blobdir / digest.removeprefix("sha256:"), manifest)
    index_path = root / "index.json"
    try:
        doc = json.loads(index_path.read_bytes())
        entries = [m for m in doc["manifests"] if m.get("digest") != digest]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ImageError(f"{index_path}: cannot read the index: {e}") from None
    entries.append(referrer.to_json())
    doc["manifests"] = entries
    _fs.write_atomic(index_path, _canonical(doc))
    _fs.fsync_dir(root)
