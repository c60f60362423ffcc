"""containers-policy.json(5): parse a policy, find an image's requirements, match signed identities.

Layer: oci, pure (bytes in, values out; no file, network or program). The same file skopeo and
podman read governs which container images ``switch --enforce-container-sigpolicy`` and an
``ostree-image-signed:`` origin accept; :mod:`bootree.oci.sigverify` does the I/O around this.

Parsing is strict, as containers/image's is: an unknown or duplicated member, a wrong type or an
empty requirement list rejects the whole file, so a typo can never weaken a policy silently.

Lookup (containers/image ``requirementsForImageRef``): in ``transports[T]`` the image's own
identity (``docker``: ``host/repo:tag`` or ``host/repo@digest``; ``oci``: the layout directory),
then its namespaces (``docker``: ``host/ns/repo``, ``host/ns``, ``host``, then ``*.domain``
wildcards of the host without port; ``oci``: the parent directories), then ``""``; else
``default``. Only the most specific match applies, and every requirement in it must hold.

Supported requirements: ``insecureAcceptAnything``, ``reject``, ``signedBy`` (``keyType``
``GPGKeys`` with ``keyPath``/``keyPaths``/``keyData``) and ``sigstoreSigned`` with public keys
(``keyPath``/``keyPaths``/``keyData``/``keyDatas``). Refused with a clear error rather than
half-honoured: ``signedBaseLayer``, other ``keyType`` values, and sigstore's Fulcio, Rekor and
PKI (keyless) options.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bootree.errors import ContainerPolicyError, InvalidImageReference
from bootree.oci.reference import DockerReference
from bootree.oci.sigpayload import no_duplicates

__all__ = [
    "TRANSPORT_DOCKER",
    "TRANSPORT_OCI",
    "AcceptAnything",
    "Named",
    "Policy",
    "Reject",
    "Requirement",
    "SignedBy",
    "SignedIdentity",
    "SigstoreSigned",
    "docker_scopes",
    "identity_matches",
    "oci_scopes",
    "parse_named",
    "parse_policy",
]

TRANSPORT_DOCKER = "docker"
TRANSPORT_OCI = "oci"

_IDENTITY_KINDS = ("matchExact", "matchRepoDigestOrExact", "matchRepository", "exactReference",
                   "exactRepository", "remapIdentity")
_LABEL = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
_DOMAIN = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


class _Invalid(ValueError):
    """A policy document that breaks the format (turned into ContainerPolicyError by parse_policy)."""


@dataclass(frozen=True, slots=True)
class SignedIdentity:
    """``signedIdentity``: which ``docker-reference`` claims a signature may make for an image."""

    kind: str = "matchRepoDigestOrExact"
    reference: str | None = None
    """``exactReference``'s ``dockerReference``."""
    repository: str | None = None
    """``exactRepository``'s ``dockerRepository``."""
    prefix: str | None = None
    signed_prefix: str | None = None

    def describe(self) -> str:
        """The rule in the policy's words, for messages."""
        arg = self.reference or self.repository or (f"{self.prefix} -> {self.signed_prefix}" if self.prefix else "")
        return f"{self.kind}({arg})" if arg else self.kind


@dataclass(frozen=True, slots=True)
class AcceptAnything:
    """``insecureAcceptAnything``: accepts any image (other requirements still apply)."""

    kind: ClassVar[str] = "insecureAcceptAnything"


@dataclass(frozen=True, slots=True)
class Reject:
    """``reject``: refuses every image."""

    kind: ClassVar[str] = "reject"


@dataclass(frozen=True, slots=True)
class SignedBy:
    """``signedBy``: a GPG "simple signing" signature by one of the keys, claiming a matching identity."""

    key_paths: tuple[str, ...]
    key_data: bytes | None
    identity: SignedIdentity
    kind: ClassVar[str] = "signedBy"


@dataclass(frozen=True, slots=True)
class SigstoreSigned:
    """``sigstoreSigned`` with public keys: a cosign signature stored in the registry."""

    key_paths: tuple[str, ...]
    key_datas: tuple[bytes, ...]
    identity: SignedIdentity
    kind: ClassVar[str] = "sigstoreSigned"


Requirement = AcceptAnything | Reject | SignedBy | SigstoreSigned


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy.json: the global default and the per-transport scopes."""

    default: tuple[Requirement, ...]
    transports: dict[str, dict[str, tuple[Requirement, ...]]]
    source: str = "policy.json"

    def requirements_for(self, transport: str, identity: str, namespaces: Sequence[str]) -> tuple[str, tuple[Requirement, ...]]:
        """The scope that applies (``docker "host/ns"``, ``default``) and its requirements."""
        scopes = self.transports.get(transport)
        if scopes is not None:
            for name in (identity, *namespaces, ""):
                if name in scopes:
                    return f'{transport} scope "{name}"', scopes[name]
        return "default", self.default

    @property
    def default_is_insecure(self) -> bool:
        """ostree-ext's refusal test: the global default is one lone ``insecureAcceptAnything``."""
        return len(self.default) == 1 and isinstance(self.default[0], AcceptAnything)


def _object(value: object, what: str, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{what} must be a JSON object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise _Invalid(f"{what}: unknown member {unknown[0]!r}")
    return value


def _string(d: dict[str, Any], key: str, what: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise _Invalid(f"{what}: {key!r} must be a string")
    return v


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid(f"{what}: not valid base64") from None


def _check_prefix(text: str, what: str) -> None:
    """``remapIdentity`` prefixes: ``host[:port]`` or ``host[:port]/ns[/repo]`` (no tag, no digest)."""
    head, _, rest = text.partition("/")
    ok = bool(_DOMAIN.fullmatch(head)) and (not rest or all(_COMPONENT.fullmatch(c) for c in rest.split("/")))
    if not ok:
        raise _Invalid(f"{what}: prefix {text!r} is not valid")


def _identity(value: object, what: str) -> SignedIdentity:
    d = _object(value, what, ("type", "dockerReference", "dockerRepository", "prefix", "signedPrefix"))
    kind = _string(d, "type", what)
    if kind not in _IDENTITY_KINDS:
        raise _Invalid(f"{what}: unknown signedIdentity type {kind!r}")
    fields = {"exactReference": ("dockerReference",), "exactRepository": ("dockerRepository",),
              "remapIdentity": ("prefix", "signedPrefix")}.get(kind, ())
    extra = sorted(set(d) - {"type", *fields})
    if extra:
        raise _Invalid(f"{what}: {kind} has no member {extra[0]!r}")
    if kind == "exactReference":
        ref = _string(d, "dockerReference", what)
        named = parse_named(ref)
        if named is None:
            raise _Invalid(f"{what}: invalid dockerReference {ref!r}")
        if named.name_only:
            raise _Invalid(f"{what}: dockerReference {ref!r} contains neither a tag nor a digest")
        return SignedIdentity(kind, reference=ref)
    if kind == "exactRepository":
        repo = _string(d, "dockerRepository", what)
        if parse_named(repo) is None:
            raise _Invalid(f"{what}: invalid dockerRepository {repo!r}")
        return SignedIdentity(kind, repository=repo)
    if kind == "remapIdentity":
        prefix, signed = _string(d, "prefix", what), _string(d, "signedPrefix", what)
        _check_prefix(prefix, what)
        _check_prefix(signed, what)
        return SignedIdentity(kind, prefix=prefix, signed_prefix=signed)
    return SignedIdentity(kind)


def _requirement(value: object, what: str) -> Requirement:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _Invalid(f"{what} must be an object with a string 'type'")
    kind = value["type"]
    if kind == "insecureAcceptAnything":
        _object(value, what, ("type",))
        return AcceptAnything()
    if kind == "reject":
        _object(value, what, ("type",))
        return Reject()
    if kind == "signedBy":
        d = _object(value, what, ("type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"))
        key_type = _string(d, "keyType", what)
        if key_type != "GPGKeys":
            raise _Invalid(f"{what}: keyType {key_type!r} is not supported (only GPGKeys)")
        paths, data = _key_sources(d, what, "keyData", allow_many_data=False)
        if len([x for x in ("keyPath", "keyPaths", "keyData") if x in d]) != 1:
            raise _Invalid(f"{what}: exactly one of keyPath, keyPaths and keyData must be specified")
        identity = _identity(d["signedIdentity"], f"{what} signedIdentity") if "signedIdentity" in d else SignedIdentity()
        return SignedBy(paths, data[0] if data else None, identity)
    if kind == "sigstoreSigned":
        keyless = ("fulcio", "rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
                   "rekorPublicKeyDatas", "pki")
        hit = next((k for k in keyless if k in value), None)
        if hit is not None:
            raise _Invalid(f"{what}: sigstoreSigned {hit!r} (keyless/Fulcio/Rekor/PKI) is not supported by bootree;"
                           " use keyPath or keyData with a public key")
        d = _object(value, what, ("type", "keyPath", "keyPaths", "keyData", "keyDatas", "signedIdentity"))
        if len([x for x in ("keyPath", "keyPaths", "keyData", "keyDatas") if x in d]) != 1:
            raise _Invalid(f"{what}: exactly one of keyPath, keyPaths, keyData and keyDatas must be specified")
        paths, datas = _key_sources(d, what, "keyDatas", allow_many_data=True)
        identity = _identity(d["signedIdentity"], f"{what} signedIdentity") if "signedIdentity" in d else SignedIdentity()
        return SigstoreSigned(paths, datas, identity)
    if kind == "signedBaseLayer":
        raise _Invalid(f"{what}: signedBaseLayer is not supported (containers/image does not implement it either)")
    raise _Invalid(f"{what}: unknown policy requirement type {kind!r}")


def _key_sources(d: dict[str, Any], what: str, many_data: str, *, allow_many_data: bool) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    paths: list[str] = []
    datas: list[bytes] = []
    if "keyPath" in d:
        paths.append(_string(d, "keyPath", what))
    if "keyPaths" in d:
        v = d["keyPaths"]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise _Invalid(f"{what}: 'keyPaths' must be a non-empty list of strings")
        paths += v
    if "keyData" in d:
        datas.append(_base64(_string(d, "keyData", what), f"{what} keyData"))
    if allow_many_data and many_data in d:
        v = d[many_data]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise _Invalid(f"{what}: {many_data!r} must be a non-empty list of strings")
        datas += [_base64(x, f"{what} {many_data}") for x in v]
    for p in paths:
        if not p.startswith("/"):
            raise _Invalid(f"{what}: key path {p!r} must be absolute")
    return tuple(paths), tuple(datas)


def _requirements(value: object, what: str) -> tuple[Requirement, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"{what} must be a list of requirements")
    if not value:
        raise _Invalid(f"{what}: the list of policy requirements must not be empty")
    return tuple(_requirement(x, f"{what}[{i}]") for i, x in enumerate(value))


def _check_scope(transport: str, scope: str) -> None:
    if transport in (TRANSPORT_OCI, "dir") and scope:
        if not scope.startswith("/") or scope == "/":
            raise _Invalid(f'{transport} scope "{scope}" must be an absolute directory other than /')
        if re.search(r"//|/\.\.?(?:/|$)|./$", scope):
            raise _Invalid(f'{transport} scope "{scope}" is not a clean path')


def parse_policy(data: bytes, source: str = "policy.json") -> Policy:
    """Parse a policy.json document, strictly.

    Raises:
        ContainerPolicyError: (reason ``config``) for anything containers/image would refuse,
            and for the requirement kinds bootree does not implement (see the module docstring).
    """
    try:
        doc = json.loads(data, object_pairs_hook=no_duplicates)
        top = _object(doc, "policy", ("default", "transports"))
        if "default" not in top:
            raise _Invalid("the default policy is missing")
        default = _requirements(top["default"], "default")
        transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}
        raw = top.get("transports", {})
        if not isinstance(raw, dict):
            raise _Invalid("'transports' must be a JSON object")
        for transport, scopes in raw.items():
            if not isinstance(scopes, dict):
                raise _Invalid(f"transports.{transport} must be a JSON object")
            out: dict[str, tuple[Requirement, ...]] = {}
            for scope, reqs in scopes.items():
                _check_scope(transport, scope)
                out[scope] = _requirements(reqs, f'transports.{transport}["{scope}"]')
            transports[transport] = out
    except (_Invalid, ValueError, RecursionError) as e:
        raise ContainerPolicyError(source, "config", f"invalid containers policy: {e}") from None
    return Policy(default, transports, source)


# --- scopes ----------------------------------------------------------------------------------


def docker_scopes(ref: DockerReference) -> tuple[str, list[str]]:
    """The ``docker`` transport's identity and namespaces, most specific first (containers/image)."""
    name = f"{ref.host}/{ref.repository}"
    identity = f"{name}:{ref.tag}" if ref.tag and not ref.digest else f"{name}@{ref.digest}"
    namespaces = []
    cur = name
    while True:
        namespaces.append(cur)
        slash = cur.rfind("/")
        if slash < 0:
            break
        cur = cur[:slash]
    host = cur.split(":", 1)[0] if not cur.startswith("[") else cur
    while "." in host:
        host = host[host.index(".") + 1 :]
        namespaces.append("*." + host)
    return identity, namespaces


def oci_scopes(resolved_dir: str) -> tuple[str, list[str]]:
    """The ``oci`` transport's identity (the layout directory, symlinks resolved) and its parents."""
    namespaces = []
    path = resolved_dir
    while path != "/" and "/" in path:
        namespaces.append(path)
        path = path[: path.rfind("/")] or "/"
    return resolved_dir, namespaces


# --- identities ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Named:
    """A normalized docker reference: ``host/repo`` with an optional tag and digest."""

    name: str
    tag: str | None
    digest: str | None

    @property
    def name_only(self) -> bool:
        """Neither a tag nor a digest."""
        return self.tag is None and self.digest is None

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_named(text: str) -> Named | None:
    """``reference.ParseNormalizedNamed``: ``busybox`` is ``docker.io/library/busybox``; ``None`` if invalid."""
    try:
        ref = DockerReference.parse(text)
    except InvalidImageReference:
        return None
    rest = text.split("@", 1)[0]
    has_tag = rest.rfind(":") > rest.rfind("/")
    repo = ref.repository
    if ref.host == "docker.io" and "/" not in repo:
        repo = "library/" + repo
    return Named(f"{ref.host}/{repo}", ref.tag if has_tag else None, ref.digest)


def intended_of(ref: DockerReference) -> Named:
    """The image's own identity (a tag is always present or defaulted, as containers/image does)."""
    return Named(f"{ref.host}/{ref.repository}", ref.tag, ref.digest)


def _repo_digest_or_exact(intended: Named, signed: Named) -> bool:
    if signed.name_only:
        return False
    if intended.tag is not None:
        return str(signed) == str(intended)
    if intended.digest is not None:
        return signed.name == intended.name
    return False


def _remap(rule: SignedIdentity, intended: Named) -> Named | None:
    prefix, signed_prefix = rule.prefix or "", rule.signed_prefix or ""
    if not (intended.name == prefix or intended.name.startswith(prefix + "/")):
        return intended
    text = signed_prefix + str(intended)[len(prefix) :]
    remapped = parse_named(text)
    return remapped if remapped is not None and str(remapped) == text else None


def identity_matches(rule: SignedIdentity, image: DockerReference | None, signed_reference: str) -> bool:
    """Whether a signature claiming ``signed_reference`` is acceptable for ``image`` under ``rule``.

    ``image`` is ``None`` for transports without a docker identity (``oci:``): only
    ``exactReference`` and ``exactRepository`` can match there, as in containers/image.
    """
    signed = parse_named(signed_reference)
    if signed is None:
        return False
    if rule.kind == "exactReference":
        want = parse_named(rule.reference or "")
        return want is not None and not want.name_only and not signed.name_only and str(signed) == str(want)
    if rule.kind == "exactRepository":
        want = parse_named(rule.repository or "")
        return want is not None and signed.name == want.name
    if image is None:
        return False
    intended = intended_of(image)
    if rule.kind == "matchExact":
        return not intended.name_only and not signed.name_only and str(signed) == str(intended)
    if rule.kind == "matchRepository":
        return signed.name == intended.name
    if rule.kind == "remapIdentity":
        remapped = _remap(rule, intended)
        return remapped is not None and _repo_digest_or_exact(remapped, signed)
    return _repo_digest_or_exact(intended, signed)
