"""Where an image comes from: a registry or an ``oci:`` layout, behind one small interface.

Layer: oci. :func:`open_source` picks the implementation from the reference's transport;
:func:`resolve` turns a reference into the platform's manifest (following an index), its
digest, the raw bytes and the config, each checked against its digest and bounded in size.
"""

from __future__ import annotations

import hashlib
import os
import platform as _platform
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bootree.errors import FormatError, ImageError
from bootree.format.oci import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    digest_of,
    parse_manifest_or_index,
)
from bootree.oci.reference import ImageReference, Transport
from bootree.oci.registry import BlobStats, BytesFn, Fetched, RegistryClient, RegistryOptions

__all__ = ["ImageSource", "LayoutSource", "RegistrySource", "ResolvedImage", "host_architecture", "open_source", "resolve"]

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "i686": "386"}


def host_architecture() -> str:
    """The host's OCI architecture name (``amd64``, ``arm64``...)."""
    m = _platform.machine()
    return _ARCH.get(m, m)


class ImageSource(Protocol):
    """Manifests and blobs of one image."""

    stats: BlobStats

    def manifest(self, reference: str | None) -> Fetched:
        """The manifest/index for ``reference`` (a tag or digest; ``None``: the source's default)."""
        ...

    def blob_bytes(self, desc: Descriptor) -> bytes:
        """A small verified blob."""
        ...

    def fetch_blob(self, desc: Descriptor, dest: Path, on_bytes: BytesFn | None = None) -> None:
        """A verified blob written to ``dest`` (``on_bytes``: the running total, per chunk)."""
        ...

    def local_blob(self, desc: Descriptor) -> Path | None:
        """The blob's file when the source is on this machine (read in place, verified by the
        reader), else ``None``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class RegistrySource:
    """An image in a registry."""

    def __init__(self, image: ImageReference, options: RegistryOptions) -> None:
        self.ref = image.docker
        self.client = RegistryClient(self.ref.registry_host, options)
        self.stats = self.client.stats

    def manifest(self, reference: str | None) -> Fetched:
        return self.client.get_manifest(self.ref.repository, reference or self.ref.reference)

    def blob_bytes(self, desc: Descriptor) -> bytes:
        if desc.size > MAX_CONFIG_SIZE:
            raise ImageError(f"config blob {desc.digest} declares {desc.size} bytes (limit {MAX_CONFIG_SIZE})")
        return self.client.get_blob_bytes(self.ref.repository, desc)

    def fetch_blob(self, desc: Descriptor, dest: Path, on_bytes: BytesFn | None = None) -> None:
        self.client.fetch_blob(self.ref.repository, desc, dest, on_bytes)

    def local_blob(self, desc: Descriptor) -> Path | None:
        return None

    def close(self) -> None:
        self.client.close()


class LayoutSource:
    """An OCI image layout directory (``oci:DIR[:TAG]``)."""

    def __init__(self, image: ImageReference) -> None:
        path, self.tag = image.layout_path_and_tag()
        self.root = Path(path)
        self.stats = BlobStats()
        if not (self.root / "oci-layout").is_file():
            raise ImageError(f"{self.root} is not an OCI image layout (no oci-layout file)")

    def _blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        return self.root / "blobs" / algo / hexd

    def _read(self, desc: Descriptor, limit: int) -> bytes:
        if desc.size > limit:
            raise ImageError(f"blob {desc.digest} declares {desc.size} bytes (limit {limit})")
        try:
            with open(self._blob_path(desc.digest), "rb") as f:
                data = f.read(desc.size + 1)
        except FileNotFoundError:
            raise ImageError(f"{self.root}: blob {desc.digest} is missing") from None
        if len(data) != desc.size:
            raise ImageError(f"{self.root}: blob {desc.digest} is {len(data)} bytes, declared {desc.size}")
        if digest_of(data) != desc.digest:
            raise ImageError(f"{self.root}: blob {desc.digest} does not match its digest")
        self.stats.count(desc.digest, len(data))
        return data

    def manifest(self, reference: str | None) -> Fetched:
        tag = reference if reference is not None else self.tag
        index = Index.from_bytes((self.root / "index.json").read_bytes())
        if tag is not None and tag.startswith("sha256:"):
            desc = next((d for d in index.manifests if d.digest == tag), None)
            if desc is None:  # a child of a nested index: only its digest is known
                return self._by_digest(tag)
        elif tag is not None:
            desc = next((d for d in index.manifests
                         if d.annotations.get("org.opencontainers.image.ref.name") == tag), None)
        else:
            if len(index.manifests) != 1:
                raise ImageError(f"{self.root} holds {len(index.manifests)} images: name one as oci:DIR:TAG")
            desc = index.manifests[0]
        if desc is None:
            raise ImageError(f"{self.root}: no image tagged {tag!r}")
        return Fetched(self._read(desc, MAX_MANIFEST_SIZE), desc.media_type, desc.digest)

    def _by_digest(self, digest: str) -> Fetched:
        try:
            with open(self._blob_path(digest), "rb") as f:
                data = f.read(MAX_MANIFEST_SIZE + 1)
        except FileNotFoundError:
            raise ImageError(f"{self.root}: manifest {digest} is missing") from None
        if len(data) > MAX_MANIFEST_SIZE or digest_of(data) != digest:
            raise ImageError(f"{self.root}: manifest {digest} does not match its digest")
        return Fetched(data, None, digest)

    def blob_bytes(self, desc: Descriptor) -> bytes:
        return self._read(desc, MAX_CONFIG_SIZE)

    def local_blob(self, desc: Descriptor) -> Path | None:
        path = self._blob_path(desc.digest)
        if not path.is_file():
            raise ImageError(f"{self.root}: blob {desc.digest} is missing")
        return path

    def fetch_blob(self, desc: Descriptor, dest: Path, on_bytes: BytesFn | None = None) -> None:
        src = self._blob_path(desc.digest)
        tmp = dest.with_name(dest.name + ".partial")
        h = hashlib.sha256()
        n = 0
        try:
            with open(src, "rb") as f, open(tmp, "wb") as out:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    n += len(chunk)
                    if n > desc.size:
                        raise ImageError(f"{self.root}: blob {desc.digest} larger than declared {desc.size}")
                    h.update(chunk)
                    out.write(chunk)
                    if on_bytes is not None:
                        on_bytes(n)
        except FileNotFoundError:
            raise ImageError(f"{self.root}: blob {desc.digest} is missing") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if n != desc.size or "sha256:" + h.hexdigest() != desc.digest:
            tmp.unlink(missing_ok=True)
            raise ImageError(f"{self.root}: blob {desc.digest} does not match its size or digest")
        self.stats.count(desc.digest, n)
        self.stats.blob_done()
        os.rename(tmp, dest)

    def close(self) -> None:
        pass


def open_source(image: ImageReference, options: RegistryOptions | None = None) -> ImageSource:
    """The source for a reference.

    Raises:
        ImageError: for transports bootree does not read (containers-storage, dir, archives).
    """
    if image.transport is Transport.REGISTRY:
        return RegistrySource(image, options or RegistryOptions())
    if image.transport is Transport.OCI:
        return LayoutSource(image)
    raise ImageError(f"transport {image.transport.value!r} is not supported",
                     hint="use a registry (docker://) or an OCI layout directory (oci:DIR)")


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """An image's platform manifest (exact bytes and digest) and its config."""

    digest: str
    manifest_bytes: bytes
    manifest: Manifest
    config_bytes: bytes
    config: ImageConfig


def resolve_manifest(source: ImageSource, architecture: str | None = None) -> tuple[Fetched, Manifest]:
    """Fetch the manifest, following an index to the host platform's entry.

    Raises:
        ImageError: for an index without the platform, or a malformed document.
    """
    arch = architecture or host_architecture()
    fetched = source.manifest(None)
    try:
        doc = parse_manifest_or_index(fetched.data, fetched.media_type)
        if isinstance(doc, Index):
            desc = doc.for_platform(arch)
            if desc is None:
                raise ImageError(f"no image for linux/{arch} in the index (it has: {', '.join(doc.platforms()) or 'none'})")
            fetched = source.manifest(desc.digest)
            if len(fetched.data) != desc.size:
                raise ImageError(f"manifest {desc.digest} is {len(fetched.data)} bytes, the index declares {desc.size}")
            doc = Manifest.from_bytes(fetched.data, fetched.media_type or desc.media_type)
    except FormatError as e:
        raise ImageError(f"invalid image manifest: {e}") from None
    return fetched, doc


def resolve(source: ImageSource, architecture: str | None = None) -> ResolvedImage:
    """Manifest and config of the image, checked against the host architecture.

    Raises:
        ImageError: see :func:`resolve_manifest`; a config for another architecture.
    """
    arch = architecture or host_architecture()
    fetched, manifest = resolve_manifest(source, arch)
    return resolve_config(source, fetched, manifest, arch)


def resolve_config(source: ImageSource, fetched: Fetched, manifest: Manifest, architecture: str | None = None) -> ResolvedImage:
    """Fetch and check the config of a resolved manifest (see :func:`resolve`).

    Raises:
        ImageError: a malformed config, another architecture, diff_ids not matching the layers.
    """
    arch = architecture or host_architecture()
    config_bytes = source.blob_bytes(manifest.config)
    try:
        config = ImageConfig.from_bytes(config_bytes)
    except FormatError as e:
        raise ImageError(f"invalid image config: {e}") from None
    if config.architecture != arch:
        raise ImageError(f"image is for {config.os}/{config.architecture}, this host is linux/{arch}")
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageError(f"image config lists {len(config.diff_ids)} diff_ids for {len(manifest.layers)} layers")
    return ResolvedImage(fetched.digest, fetched.data, manifest, config_bytes, config)
