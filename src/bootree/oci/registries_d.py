"""containers-registries.d(5): where an image's lookaside signatures live, and whether to read
sigstore attachments.

Layer: oci. The directory (``--registries.d``, else ``$HOME/.config/containers/registries.d``
if it exists, else ``/etc/containers/registries.d``) holds ``*.yaml`` files, merged; one
``default-docker`` section and each ``docker`` key may appear in one file only (a second one is
an error, as in containers/image). A section has ``lookaside`` (read), ``lookaside-staging``
(write: skopeo's ``--sign-by`` puts signatures there), their old names ``sigstore`` and
``sigstore-staging``, and ``use-sigstore-attachments``.

Lookup (containers/image ``signatureTopLevel``): the image's identity (``host/repo:tag``), then
its namespaces as in policy.json, then ``default-docker``; the first section that *defines* the
wanted key wins. With none, the built-in lookaside is ``file:///var/lib/containers/sigstore``
(root) or ``~/.local/share/containers/sigstore``. Signatures of a manifest are at
``BASE/<repo path>@<algo>=<hex>/signature-<N>``, N = 1, 2, ... up to the first missing one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bootree.errors import ContainerPolicyError
from bootree.oci.policy import docker_scopes
from bootree.oci.reference import DockerReference

__all__ = ["Namespace", "RegistriesD", "load_registries_d", "lookaside_url", "parse_registries_d", "registries_d_dir"]


@dataclass(frozen=True, slots=True)
class Namespace:
    """One configuration section."""

    lookaside: str | None = None
    lookaside_staging: str | None = None
    use_sigstore_attachments: bool | None = None


@dataclass(frozen=True, slots=True)
class RegistriesD:
    """The merged configuration of a registries.d directory."""

    default_docker: Namespace | None = None
    docker: dict[str, Namespace] = field(default_factory=dict)

    def _sections(self, ref: DockerReference) -> list[Namespace]:
        identity, namespaces = docker_scopes(ref)
        out = [self.docker[n] for n in (identity, *namespaces) if n in self.docker]
        if self.default_docker is not None:
            out.append(self.default_docker)
        return out

    def lookaside_base(self, ref: DockerReference, *, write: bool = False) -> str | None:
        """The configured lookaside URL for ``ref`` (``None``: none configured)."""
        for ns in self._sections(ref):
            url = (ns.lookaside_staging if write else None) or ns.lookaside
            if url:
                return url
        return None

    def use_sigstore_attachments(self, ref: DockerReference) -> bool:
        """Whether sigstore attachments (``sha256-<hex>.sig``) are read for ``ref``."""
        for ns in self._sections(ref):
            if ns.use_sigstore_attachments is not None:
                return ns.use_sigstore_attachments
        return False


def _section(value: object, where: str) -> Namespace:
    if value is None:
        return Namespace()
    if not isinstance(value, dict):
        raise ContainerPolicyError(where, "config", "a registries.d section must be a mapping")
    section: dict[str, Any] = value

    def url(*keys: str) -> str | None:
        for k in keys:
            v = section.get(k)
            if v is not None and not isinstance(v, str):
                raise ContainerPolicyError(where, "config", f"registries.d: {k!r} must be a URL string")
            if v:
                return v
        return None

    use = section.get("use-sigstore-attachments")
    if use is not None and not isinstance(use, bool):
        raise ContainerPolicyError(where, "config", "registries.d: 'use-sigstore-attachments' must be true or false")
    return Namespace(url("lookaside", "sigstore"), url("lookaside-staging", "sigstore-staging"), use)


def parse_registries_d(files: list[tuple[str, str]]) -> RegistriesD:
    """Merge ``(name, YAML text)`` pairs, refusing a section defined twice.

    Raises:
        ContainerPolicyError: (``config``) for invalid YAML or a duplicated section.
    """
    default: Namespace | None = None
    default_from = ""
    docker: dict[str, Namespace] = {}
    origin: dict[str, str] = {}
    for name, text in files:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ContainerPolicyError(name, "config", f"invalid registries.d YAML: {str(e).splitlines()[0]}") from None
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ContainerPolicyError(name, "config", "a registries.d file must be a YAML mapping")
        if doc.get("default-docker") is not None:
            if default is not None:
                raise ContainerPolicyError(name, "config", f'"default-docker" is also defined in {default_from}')
            default, default_from = _section(doc["default-docker"], name), name
        sections = doc.get("docker") or {}
        if not isinstance(sections, dict):
            raise ContainerPolicyError(name, "config", "'docker' must be a mapping of scopes")
        for scope, section in sections.items():
            if not isinstance(scope, str):
                raise ContainerPolicyError(name, "config", f"registries.d scope {scope!r} is not a string")
            if scope in docker:
                raise ContainerPolicyError(name, "config", f'"docker" namespace {scope!r} is also defined in {origin[scope]}')
            docker[scope], origin[scope] = _section(section, name), name
    return RegistriesD(default, docker)


def registries_d_dir(explicit: Path | None = None) -> Path:
    """``--registries.d``, else the user's directory if it exists, else the system's."""
    if explicit is not None:
        return explicit
    user = Path(os.path.expanduser("~")) / ".config/containers/registries.d"
    return user if user.is_dir() else Path("/etc/containers/registries.d")


def load_registries_d(directory: Path) -> RegistriesD:
    """Read and merge every ``*.yaml`` of ``directory`` (a missing directory is empty).

    Raises:
        ContainerPolicyError: see :func:`parse_registries_d`; an unreadable file.
    """
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".yaml"))
    except FileNotFoundError:
        return RegistriesD()
    except OSError as e:
        raise ContainerPolicyError(str(directory), "config", f"cannot read registries.d: {e.strerror}") from None
    files = []
    for n in names:
        path = directory / n
        try:
            files.append((str(path), path.read_text("utf-8")))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as e:
            raise ContainerPolicyError(str(path), "config", f"cannot read: {e}") from None
    return parse_registries_d(files)


def default_lookaside() -> str:
    """containers/image's built-in lookaside when nothing is configured."""
    if os.geteuid() == 0:
        return "file:///var/lib/containers/sigstore"
    return "file://" + os.path.join(os.path.expanduser("~"), ".local/share/containers/sigstore")


def lookaside_url(base: str, ref: DockerReference, manifest_digest: str, index: int) -> str:
    """URL of signature ``index`` (0-based) of ``manifest_digest`` under ``base``."""
    algo, _, hexd = manifest_digest.partition(":")
    return f"{base.rstrip('/')}/{ref.repository}@{algo}={hexd}/signature-{index + 1}"
