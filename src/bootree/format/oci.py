"""OCI image-spec and Docker schema 2 codecs: descriptors, manifests, indexes, image configs.

Layer: format (pure). Bytes from a registry or an ``oci:`` layout are parsed here into frozen
values, strictly: a digest must be ``sha256:`` + 64 lowercase hex digits, a size a non-negative
integer, and a media type one this client knows how to handle. The raw bytes are never
re-serialized: a manifest's identity is the sha256 of the exact bytes received
(:func:`digest_of`), so the callers keep them next to the parsed value.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from bootree.errors import FormatError

__all__ = [
    "CONFIG_TYPES",
    "INDEX_TYPES",
    "LAYER_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_TYPES",
    "MAX_CONFIG_SIZE",
    "MAX_MANIFEST_SIZE",
    "Compression",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "check_digest",
    "digest_of",
    "layer_compression",
    "parse_manifest_or_index",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

#: The Accept header of a manifest request: registry 2.8 hides OCI manifests without it.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

#: Bounds on documents fetched before their size is known (containers/image uses 4 MiB).
MAX_MANIFEST_SIZE = 4 << 20
MAX_CONFIG_SIZE = 4 << 20

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Compression:
    """Layer compression names (the media type suffixes)."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


LAYER_TYPES: dict[str, str] = {
    "application/vnd.oci.image.layer.v1.tar": Compression.NONE,
    "application/vnd.oci.image.layer.v1.tar+gzip": Compression.GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd": Compression.ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": Compression.GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": Compression.GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": Compression.GZIP,
}


def layer_compression(media_type: str) -> str:
    """The compression of a layer media type.

    Raises:
        FormatError: for a media type that is not a filesystem layer.
    """
    try:
        return LAYER_TYPES[media_type]
    except KeyError:
        raise FormatError(f"unsupported layer media type {media_type!r}") from None


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of exact bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Validate a digest string (only sha256 is accepted, as bootc does).

    Raises:
        FormatError: if it is not ``sha256:`` followed by 64 lowercase hex digits.
    """
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise FormatError(f"invalid digest {digest!r}")
    return digest


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{what}: expected a JSON object")
    return value


def _str(d: dict[str, Any], key: str, what: str, *, required: bool = True) -> str:
    v = d.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise FormatError(f"{what}: {key!r} must be a string")
    return v


def _str_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    d = _obj(value, what)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
        raise FormatError(f"{what}: expected string values")
    return dict(d)


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"{what} is not valid JSON: {e}") from None
    return _obj(doc, what)


@dataclass(frozen=True, slots=True)
class Platform:
    """``platform`` of an index entry (OCI names: ``amd64``, ``arm64``...)."""

    architecture: str
    os: str
    variant: str = ""


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: what a blob is, its digest and exact size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    platform: Platform | None = None

    @classmethod
    def from_json(cls, value: object, what: str = "descriptor") -> Descriptor:
        """Parse and validate one descriptor.

        Raises:
            FormatError: for a missing field, a bad digest or a negative size.
        """
        d = _obj(value, what)
        size = d.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise FormatError(f"{what}: 'size' must be a non-negative integer")
        plat = None
        if d.get("platform") is not None:
            p = _obj(d["platform"], f"{what} platform")
            plat = Platform(_str(p, "architecture", what), _str(p, "os", what), _str(p, "variant", what, required=False))
        return cls(
            media_type=_str(d, "mediaType", what),
            digest=check_digest(_str(d, "digest", what)),
            size=size,
            annotations=_str_map(d.get("annotations"), f"{what} annotations"),
            platform=plat,
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor as a JSON object (``mediaType``, ``digest``, ``size``, ``annotations``)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2: the same shape)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None) -> Manifest:
        """Parse manifest bytes; ``media_type`` is the transport's Content-Type, if any.

        Raises:
            FormatError: for anything but a schema 2 image manifest with valid descriptors.
        """
        doc = _load(data, "manifest")
        if doc.get("schemaVersion") != 2:
            raise FormatError("manifest: schemaVersion must be 2")
        mt = doc.get("mediaType") or media_type or OCI_MANIFEST
        if mt not in MANIFEST_TYPES:
            raise FormatError(f"manifest: unsupported media type {mt!r}")
        if not isinstance(doc.get("layers"), list):
            raise FormatError("manifest: 'layers' must be a list")
        config = Descriptor.from_json(doc.get("config"), "manifest config")
        if config.media_type not in CONFIG_TYPES:
            raise FormatError(f"manifest: config media type {config.media_type!r} is not an image config")
        layers = tuple(Descriptor.from_json(x, f"manifest layer {i}") for i, x in enumerate(doc["layers"]))
        return cls(mt, config, layers, _str_map(doc.get("annotations"), "manifest annotations"))


@dataclass(frozen=True, slots=True)
class Index:
    """An OCI image index or a Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None) -> Index:
        """Parse index bytes (``index.json`` of a layout, too).

        Raises:
            FormatError: for malformed JSON or descriptors.
        """
        doc = _load(data, "index")
        if doc.get("schemaVersion") != 2:
            raise FormatError("index: schemaVersion must be 2")
        mt = doc.get("mediaType") or media_type or OCI_INDEX
        if mt not in INDEX_TYPES:
            raise FormatError(f"index: unsupported media type {mt!r}")
        if not isinstance(doc.get("manifests"), list):
            raise FormatError("index: 'manifests' must be a list")
        return cls(mt, tuple(Descriptor.from_json(x, f"index entry {i}") for i, x in enumerate(doc["manifests"])))

    def for_platform(self, architecture: str, os_name: str = "linux") -> Descriptor | None:
        """The image manifest for the host platform; an entry without platform matches any."""
        fallback = None
        for d in self.manifests:
            if d.media_type not in MANIFEST_TYPES:
                continue
            if d.platform is None:
                fallback = fallback or d
            elif d.platform.architecture == architecture and d.platform.os == os_name:
                return d
        return fallback

    def platforms(self) -> list[str]:
        """``os/arch`` of each entry, for error messages."""
        return [f"{d.platform.os}/{d.platform.architecture}" for d in self.manifests if d.platform]


def parse_manifest_or_index(data: bytes, media_type: str | None) -> Manifest | Index:
    """Parse a document that may be either (the registry's Content-Type, else its mediaType).

    Raises:
        FormatError: if it is neither.
    """
    doc = _load(data, "manifest")
    mt = doc.get("mediaType") or media_type or ""
    if mt in INDEX_TYPES or (not mt and "manifests" in doc):
        return Index.from_bytes(data, mt or None)
    return Manifest.from_bytes(data, mt or None)


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config bootc reads: platform, labels, created, diff_ids."""

    architecture: str
    os: str
    created: str
    labels: dict[str, str]
    diff_ids: tuple[str, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageConfig:
        """Parse an image config.

        Raises:
            FormatError: for malformed JSON, a missing architecture or bad diff_ids.
        """
        doc = _load(data, "image config")
        rootfs = _obj(doc.get("rootfs", {}), "image config rootfs")
        diff_ids = rootfs.get("diff_ids", [])
        if not isinstance(diff_ids, list):
            raise FormatError("image config: rootfs.diff_ids must be a list")
        cfg = _obj(doc.get("config") or {}, "image config config")
        return cls(
            architecture=_str(doc, "architecture", "image config"),
            os=_str(doc, "os", "image config"),
            created=_str(doc, "created", "image config", required=False),
            labels=_str_map(cfg.get("Labels"), "image config labels"),
            diff_ids=tuple(check_digest(d) for d in diff_ids),
        )

    @property
    def version(self) -> str | None:
        """``org.opencontainers.image.version``, else ``version`` (bootc's order)."""
        return self.labels.get("org.opencontainers.image.version") or self.labels.get("version")

    @property
    def timestamp(self) -> str | None:
        """``org.opencontainers.image.created``, else the config's ``created``."""
        return self.labels.get("org.opencontainers.image.created") or self.created or None
