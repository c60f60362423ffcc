"""Image references as bootc, ostree-ext and containers/image spell them.

Layer: oci (pure values). Three levels, as in ostree-ext:

* :class:`ImageReference`: a transport and a name: ``docker://quay.io/x/y:tag`` (the default
  ``registry`` transport), ``oci:/path[:tag]``, ``oci-archive:/file[:tag]``...
* :class:`OstreeImageReference`: that plus a signature policy, the string bootc writes to the
  origin file (``ostree-unverified-registry:quay.io/x/y:tag``, ``ostree-remote-image:REMOTE:...``,
  ``ostree-image-signed:...``).
* :func:`escape_ref`: ostree-ext's ``refescape``, which maps an image reference to the
  ``ostree/container/image/...`` ref that holds its merge commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from bootree.errors import InvalidImageReference

__all__ = [
    "BLOB_REF_PREFIX",
    "IMAGE_REF_PREFIX",
    "DockerReference",
    "ImageReference",
    "OstreeImageReference",
    "SignatureKind",
    "Transport",
    "blob_ref",
    "escape_ref",
    "image_ref",
]

IMAGE_REF_PREFIX = "ostree/container/image/"
BLOB_REF_PREFIX = "ostree/container/blob/"


class Transport(StrEnum):
    """bootc's transport names (``status`` JSON ``transport``)."""

    REGISTRY = "registry"
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    CONTAINERS_STORAGE = "containers-storage"
    DIR = "dir"
    DOCKER_ARCHIVE = "docker-archive"

    @property
    def prefix(self) -> str:
        """The containers/image prefix: ``docker://`` for the registry, else ``NAME:``."""
        return "docker://" if self is Transport.REGISTRY else f"{self.value}:"


_PREFIXES: list[tuple[str, Transport]] = [
    ("docker://", Transport.REGISTRY),
    ("registry:", Transport.REGISTRY),
    ("oci-archive:", Transport.OCI_ARCHIVE),
    ("oci:", Transport.OCI),
    ("containers-storage:", Transport.CONTAINERS_STORAGE),
    ("dir:", Transport.DIR),
    ("docker-archive:", Transport.DOCKER_ARCHIVE),
]

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPO = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
_HOST_RE = re.compile(_HOST)


@dataclass(frozen=True, slots=True)
class DockerReference:
    """``HOST[:PORT]/REPO[:TAG][@DIGEST]`` parsed; a bare name is ``docker.io/library/NAME``."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> DockerReference:
        """Parse a registry reference (without ``docker://``).

        Raises:
            InvalidImageReference: for anything outside the containers/image grammar.
        """
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST.fullmatch(digest):
                raise InvalidImageReference(f"invalid digest in image reference {text!r}")
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise InvalidImageReference(f"invalid tag {tag!r} in image reference {text!r}")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            host, repo = first, remainder
            if not _HOST_RE.fullmatch(host):
                raise InvalidImageReference(f"invalid registry host {host!r} in {text!r}")
        else:
            host, repo = "docker.io", rest
            if "/" not in repo:
                repo = "library/" + repo
        if not _REPO.fullmatch(repo):
            raise InvalidImageReference(f"invalid repository name {repo!r} in image reference {text!r}",
                                        hint="repository names are lowercase: [a-z0-9]+([._-][a-z0-9]+)*(/...)*")
        if tag is None and digest is None:
            tag = "latest"
        return cls(host, repo, tag, digest)

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if there is one (it wins), else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def registry_host(self) -> str:
        """Where to connect: ``docker.io`` is served by ``registry-1.docker.io``."""
        return "registry-1.docker.io" if self.host == "docker.io" else self.host

    def __str__(self) -> str:
        s = f"{self.host}/{self.repository}"
        if self.tag and not self.digest:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def with_digest(self, digest: str) -> DockerReference:
        """The same image pinned to ``digest``."""
        return DockerReference(self.host, self.repository, None, digest)


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A transport and a name (bootc's ``ImageReference`` without the signature)."""

    transport: Transport
    name: str

    @classmethod
    def parse(cls, text: str, transport: str | None = None) -> ImageReference:
        """Parse ``docker://...``, ``oci:DIR[:TAG]``... or, with ``transport`` (``--transport``), a bare name.

        A string without a known prefix is a registry reference, as in ``bootc switch``.

        Raises:
            InvalidImageReference: for an empty name, an unknown transport or a bad registry name.
        """
        if transport is not None:
            try:
                t = Transport(transport)
            except ValueError:
                raise InvalidImageReference(f"unknown transport {transport!r}",
                                            hint="one of: " + ", ".join(x.value for x in Transport)) from None
            name = text
            for prefix, pt in _PREFIXES:
                if text.startswith(prefix) and pt is t:
                    name = text[len(prefix) :]
                    break
        else:
            t, name = Transport.REGISTRY, text
            for prefix, pt in _PREFIXES:
                if text.startswith(prefix):
                    t, name = pt, text[len(prefix) :]
                    break
        if not name:
            raise InvalidImageReference(f"empty image name in {text!r}")
        if t is Transport.REGISTRY:
            DockerReference.parse(name)  # validate
        return cls(t, name)

    @property
    def docker(self) -> DockerReference:
        """The parsed registry reference.

        Raises:
            InvalidImageReference: if this is not a registry reference.
        """
        if self.transport is not Transport.REGISTRY:
            raise InvalidImageReference(f"{self} is not a registry reference")
        return DockerReference.parse(self.name)

    def layout_path_and_tag(self) -> tuple[str, str | None]:
        """``oci:DIR[:TAG]`` split into the directory and the tag (``None``: the only image)."""
        path, sep, tag = self.name.rpartition(":")
        if sep and path and "/" not in tag:
            return path, tag
        return self.name, None

    @property
    def pinned(self) -> bool:
        """A digest reference: ``upgrade`` never moves it."""
        return self.transport is Transport.REGISTRY and self.docker.digest is not None

    def __str__(self) -> str:
        """containers/image's spelling: ``docker://NAME`` or ``oci:NAME``."""
        return self.transport.prefix + self.name

    @property
    def store_name(self) -> str:
        """ostree-ext's Display form (``registry:NAME``, ``oci:NAME``), escaped into the image ref."""
        return f"{self.transport.value}:{self.name}"

    @property
    def short(self) -> str:
        """bootc's ``status`` form: the bare name for the registry, ``oci:DIR`` otherwise."""
        return self.name if self.transport is Transport.REGISTRY else str(self)


class SignatureKind(StrEnum):
    """How an image is verified (bootc's ``signature``)."""

    INSECURE = "insecure"
    CONTAINER_POLICY = "containerPolicy"
    OSTREE_REMOTE = "ostreeRemote"


@dataclass(frozen=True, slots=True)
class OstreeImageReference:
    """An image reference with its verification policy: the origin's ``container-image-reference``."""

    sigverify: SignatureKind
    image: ImageReference
    remote: str | None = None

    @classmethod
    def parse(cls, text: str) -> OstreeImageReference:
        """Parse the ``ostree-…:`` forms; a plain image reference counts as unverified.

        Raises:
            InvalidImageReference: for a malformed string.
        """
        if text.startswith("ostree-unverified-registry:"):
            return cls(SignatureKind.INSECURE, ImageReference.parse(text.split(":", 1)[1], "registry"))
        if text.startswith("ostree-unverified-image:"):
            return cls(SignatureKind.INSECURE, ImageReference.parse(text.split(":", 1)[1]))
        if text.startswith("ostree-image-signed:"):
            return cls(SignatureKind.CONTAINER_POLICY, ImageReference.parse(text.split(":", 1)[1]))
        for prefix, default_registry in (("ostree-remote-registry:", True), ("ostree-remote-image:", False)):
            if text.startswith(prefix):
                remote, sep, rest = text[len(prefix) :].partition(":")
                if not sep or not remote or not rest:
                    raise InvalidImageReference(f"invalid {prefix} reference {text!r}: expected {prefix}REMOTE:IMAGE")
                img = ImageReference.parse(rest, "registry") if default_registry else ImageReference.parse(rest)
                return cls(SignatureKind.OSTREE_REMOTE, img, remote)
        return cls(SignatureKind.INSECURE, ImageReference.parse(text))

    def __str__(self) -> str:
        """The string bootc writes to the origin file."""
        if self.sigverify is SignatureKind.OSTREE_REMOTE:
            return f"ostree-remote-image:{self.remote}:{self.image}"
        if self.sigverify is SignatureKind.CONTAINER_POLICY:
            return f"ostree-image-signed:{self.image}"
        if self.image.transport is Transport.REGISTRY:
            return f"ostree-unverified-registry:{self.image.name}"
        return f"ostree-unverified-image:{self.image}"


def escape_ref(text: str) -> str:
    """ostree-ext's ``refescape``: a string as ref components.

    ASCII alphanumerics and ``-`` stay; ``/`` stays only after an alphanumeric and not at the
    end; ``_`` becomes ``__``; anything else ``_XX_`` (the code point in uppercase hex).
    """
    out: list[str] = []
    prev_alnum = False
    for i, ch in enumerate(text):
        alnum = ch.isascii() and ch.isalnum()
        if alnum or ch == "-":
            out.append(ch)
        elif ch == "/" and prev_alnum and i != len(text) - 1:
            out.append(ch)
        elif ch == "_":
            out.append("__")
        else:
            out.append(f"_{ord(ch):X}_")
        prev_alnum = alnum
    return "".join(out)


def image_ref(image: ImageReference) -> str:
    """``ostree/container/image/<escaped ref>``: where an image's merge commit lives."""
    return IMAGE_REF_PREFIX + escape_ref(image.store_name)


def blob_ref(digest: str) -> str:
    """``ostree/container/blob/<escaped digest>``: where a layer's commit lives."""
    return BLOB_REF_PREFIX + escape_ref(digest)
