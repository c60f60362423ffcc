"""Verify a container image against containers-policy.json before anything of it is imported.

Layer: oci (the I/O around :mod:`bootree.oci.policy`). What ``switch
--enforce-container-sigpolicy`` and an ``ostree-image-signed:`` origin run first:

1. find and parse the policy (``--policy``, ``$CONTAINERS_POLICY_JSON``,
   ``$XDG_CONFIG_HOME``/``~/.config/containers/policy.json``, ``/etc/containers/policy.json``,
   ``/usr/share/containers/policy.json``: bootc's order; skopeo 1.9 reads only its ``--policy``,
   the user file and /etc);
2. refuse, as ostree-ext does for ``ostree-image-signed``, a policy whose global default is a
   lone ``insecureAcceptAnything`` (it would make the "signed" origin meaningless);
3. pick the requirements of the image's scope; a ``reject`` fails before any network access;
4. fetch the top-level manifest (bounded, digest-checked) and, only if a requirement needs them,
   its signatures: GPG "simple signing" blobs from the registries.d lookaside (``file://`` or
   ``http(s)://``, 4 MiB each, at most 128), cosign signatures from the ``sha256-<hex>.sig`` tag
   when registries.d enables ``use-sigstore-attachments``;
5. check every requirement: a signature counts only if its cryptography verifies against the
   requirement's keys (``gpgv`` with exactly the policy's keyring; ``cryptography`` for cosign),
   its payload names the manifest digest that was fetched, and its identity matches.

The caller then pulls through :class:`PinnedSource`, which serves the verified manifest bytes, so
a tag that moves between the check and the pull cannot swap the image: everything below the
manifest is reached through digests it names.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bootree.errors import ContainerPolicyError, FormatError, ImageError, RegistryError, VerificationError
from bootree.format.oci import OCI_MANIFEST, Descriptor
from bootree.oci.policy import (
    TRANSPORT_DOCKER,
    TRANSPORT_OCI,
    AcceptAnything,
    Policy,
    Reject,
    Requirement,
    SignedBy,
    SigstoreSigned,
    docker_scopes,
    identity_matches,
    oci_scopes,
    parse_policy,
)
from bootree.oci.reference import DockerReference, ImageReference, Transport
from bootree.oci.registries_d import (
    RegistriesD,
    default_lookaside,
    load_registries_d,
    lookaside_url,
    registries_d_dir,
)
from bootree.oci.registry import BlobStats, BytesFn, Fetched
from bootree.oci.sigpayload import COSIGN_TYPE, SIMPLE_SIGNING_TYPE, SignedClaim, digest_matches, parse_claim
from bootree.oci.source import ImageSource, RegistrySource
from bootree.sign.gpg import GpgVerifier
from bootree.sign.result import SignatureCheck

if TYPE_CHECKING:  # cryptography loads only for sigstoreSigned policies (a booted host's
    # upgrade of an unsigned image must not need it, nor its libgcc_s)
    from bootree.sign import sigstore

__all__ = ["Decision", "PinnedSource", "PolicyOptions", "find_policy", "load_policy", "verify_image"]

MAX_SIGNATURE = 4 << 20
MAX_SIGNATURES = 128
MAX_POLICY = 4 << 20
SIGSTORE_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGSTORE_ANNOTATION = "dev.cosignproject.cosign/signature"


@dataclass(frozen=True, slots=True)
class PolicyOptions:
    """Where the policy and registries.d are (``None``: the usual places)."""

    policy: Path | None = None
    registries_d: Path | None = None
    refuse_insecure_default: bool = True
    """ostree-ext's rule for ``ostree-image-signed``: a default of ``insecureAcceptAnything`` is refused."""
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    """An accepted image: its verified top-level manifest and why it was accepted."""

    image: ImageReference
    manifest: Fetched
    policy: str
    scope: str
    accepted: tuple[str, ...]

    @property
    def line(self) -> str:
        """One line for the user."""
        return f"Image {self.manifest.digest} accepted by {self.policy} ({self.scope}): {'; '.join(self.accepted)}"


def find_policy(explicit: Path | None = None) -> Path:
    """The policy file to use (module docstring, step 1).

    Raises:
        ContainerPolicyError: (``config``) when there is none.
    """
    if explicit is not None:
        return explicit
    env = os.environ.get("CONTAINERS_POLICY_JSON")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    user = Path(xdg) if xdg else Path(os.path.expanduser("~")) / ".config"
    candidates = [user / "containers/policy.json", Path("/etc/containers/policy.json"),
                  Path("/usr/share/containers/policy.json")]
    for p in candidates:
        if p.is_file():
            return p
    raise ContainerPolicyError("policy.json", "config", "no containers policy found (checked $CONTAINERS_POLICY_JSON, "
                               + ", ".join(map(str, candidates)) + ")", hint="write /etc/containers/policy.json")


def load_policy(path: Path) -> Policy:
    """Read and parse a policy file.

    Raises:
        ContainerPolicyError: (``config``) unreadable, too large or invalid.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_POLICY + 1)
    except OSError as e:
        raise ContainerPolicyError(str(path), "config", f"cannot read the containers policy: {e.strerror}") from None
    if len(data) > MAX_POLICY:
        raise ContainerPolicyError(str(path), "config", f"containers policy larger than {MAX_POLICY} bytes")
    return parse_policy(data, str(path))


class PinnedSource:
    """An :class:`ImageSource` whose top-level manifest is the one that was verified."""

    def __init__(self, inner: ImageSource, top: Fetched) -> None:
        self.inner = inner
        self.top = top
        self.stats: BlobStats = inner.stats

    def manifest(self, reference: str | None) -> Fetched:
        if reference is None or reference == self.top.digest:
            return self.top
        return self.inner.manifest(reference)

    def blob_bytes(self, desc: Descriptor) -> bytes:
        return self.inner.blob_bytes(desc)

    def fetch_blob(self, desc: Descriptor, dest: Path, on_bytes: BytesFn | None = None) -> None:
        self.inner.fetch_blob(desc, dest, on_bytes)

    def local_blob(self, desc: Descriptor) -> Path | None:
        return self.inner.local_blob(desc)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True, slots=True)
class _Attachment:
    media_type: str
    payload: bytes
    annotations: dict[str, str]


@dataclass
class _Signatures:
    """The image's signatures, fetched on first use."""

    image: ImageReference
    source: ImageSource
    digest: str
    registries: RegistriesD | None
    timeout: float
    _simple: list[bytes] | None = None
    _sigstore: list[_Attachment] | None = None
    _http: httpx.Client | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def simple(self) -> list[bytes]:
        if self._simple is None:
            self._simple = self._lookaside() if self.image.transport is Transport.REGISTRY else []
        return self._simple

    def attachments(self) -> list[_Attachment]:
        if self._sigstore is None:
            self._sigstore = []
            if (isinstance(self.source, RegistrySource) and self.registries is not None
                    and self.registries.use_sigstore_attachments(self.source.ref)):
                self._sigstore = _fetch_attachments(self.source, self.digest)
        return self._sigstore

    def _lookaside(self) -> list[bytes]:
        ref = self.image.docker
        assert self.registries is not None
        base = self.registries.lookaside_base(ref) or default_lookaside()
        out: list[bytes] = []
        for i in range(MAX_SIGNATURES + 1):
            if i == MAX_SIGNATURES:
                raise ContainerPolicyError(str(self.image), "invalid",
                                           f"lookaside {base} serves more than {MAX_SIGNATURES} signatures")
            blob = self._read(lookaside_url(base, ref, self.digest, i))
            if blob is None:
                break
            out.append(blob)
        return out

    def _read(self, url: str) -> bytes | None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "file":
            try:
                with open(urllib.parse.unquote(parts.path), "rb") as f:
                    data = f.read(MAX_SIGNATURE + 1)
            except FileNotFoundError:
                return None
            except OSError as e:
                raise ContainerPolicyError(str(self.image), "config", f"cannot read signature {url}: {e.strerror}") from None
        elif parts.scheme in ("http", "https"):
            if self._http is None:
                self._http = httpx.Client(timeout=self.timeout, follow_redirects=True)
            try:
                with self._http.stream("GET", url) as r:
                    if r.status_code == 404:
                        return None
                    if r.status_code != 200:
                        raise RegistryError(url, f"reading a signature: HTTP {r.status_code}", status=r.status_code)
                    buf = bytearray()
                    for chunk in r.iter_bytes():
                        buf += chunk
                        if len(buf) > MAX_SIGNATURE:
                            break
                    data = bytes(buf)
            except httpx.HTTPError as e:
                raise RegistryError(url, f"reading a signature: {e or type(e).__name__}", transient=True) from None
        else:
            raise ContainerPolicyError(str(self.image), "config", f"unsupported lookaside URL scheme in {url}")
        if len(data) > MAX_SIGNATURE:
            raise ContainerPolicyError(str(self.image), "invalid", f"signature {url} is larger than {MAX_SIGNATURE} bytes")
        return data


def _fetch_attachments(source: RegistrySource, digest: str) -> list[_Attachment]:
    """The layers of the ``sha256-<hex>.sig`` manifest (none if the tag does not exist)."""
    tag = digest.replace(":", "-", 1) + ".sig"
    repo = source.ref.repository
    try:
        fetched = source.client.get_manifest(repo, tag)
    except RegistryError as e:
        if e.status == 404:
            return []
        raise
    try:
        doc = json.loads(fetched.data)
        media_type = doc.get("mediaType") or fetched.media_type
        if media_type != OCI_MANIFEST:
            raise FormatError(f"unexpected media type {media_type!r}")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise FormatError("'layers' must be a list")
        descs = [Descriptor.from_json(x, f"layer {i}") for i, x in enumerate(layers)]
    except (ValueError, AttributeError, FormatError) as e:
        raise ContainerPolicyError(f"{source.ref.host}/{repo}:{tag}", "invalid",
                                   f"invalid sigstore attachment manifest: {e}") from None
    if len(descs) > MAX_SIGNATURES:
        raise ContainerPolicyError(f"{source.ref.host}/{repo}:{tag}", "invalid", f"more than {MAX_SIGNATURES} attachments")
    out = []
    for d in descs:
        if d.size > MAX_SIGNATURE:
            raise ContainerPolicyError(f"{source.ref.host}/{repo}:{tag}", "invalid",
                                       f"attachment {d.digest} declares {d.size} bytes (limit {MAX_SIGNATURE})")
        out.append(_Attachment(d.media_type, source.client.get_blob_bytes(repo, d), dict(d.annotations)))
    return out


@dataclass
class _Rejections:
    """Why each signature was not accepted, and the most telling reason overall."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, reason: str, text: str) -> None:
        self.items.append((reason, text))

    def fail(self, image: str, kind: str) -> ContainerPolicyError:
        if not self.items:
            return ContainerPolicyError(image, "unsigned", f"{kind}: a signature was required, but no signature exists",
                                        hint="sign the image (skopeo copy --sign-by, cosign sign) or fix registries.d")
        reasons = {r for r, _ in self.items}
        reason = "invalid" if "invalid" in reasons else "untrusted" if "untrusted" in reasons else "invalid"
        if len(self.items) == 1:
            return ContainerPolicyError(image, reason, f"{kind}: {self.items[0][1]}")
        return ContainerPolicyError(image, reason, f"{kind}: none of the {len(self.items)} signatures were accepted: "
                                    + "; ".join(t for _, t in self.items))


def _accepted_claim(payload: bytes, kind: str, req: SignedBy | SigstoreSigned, ref: DockerReference | None,
                    manifest: bytes, rejections: _Rejections) -> SignedClaim | None:
    """The claim of a cryptographically verified payload, if it names this image acceptably.

    Otherwise the reason goes to ``rejections``: a malformed claim, another manifest digest (a
    valid signature of another image, replayed), an identity ``signedIdentity`` does not allow.
    """
    try:
        claim = parse_claim(payload, kind)
    except FormatError as e:
        rejections.add("invalid", str(e))
        return None
    if not digest_matches(manifest, claim.manifest_digest):
        rejections.add("invalid", f"signature for digest {claim.manifest_digest} does not match the image")
        return None
    if not identity_matches(req.identity, ref, claim.docker_reference):
        rejections.add("invalid", f"signature for identity {claim.docker_reference!r} is not accepted"
                       f" ({req.identity.describe()})")
        return None
    return claim


def _check_status(check: SignatureCheck) -> str:
    return "invalid" if check.status in ("bad", "malformed") else "untrusted"


def _signed_by(req: SignedBy, image: str, ref: DockerReference | None, top: Fetched, sigs: _Signatures) -> str:
    blobs = sigs.simple()
    rejections = _Rejections()
    if not blobs:
        raise rejections.fail(image, "signedBy")
    for p in req.key_paths:
        if not os.path.isfile(p):
            raise ContainerPolicyError(image, "config", f"signedBy key file {p} does not exist")
    with tempfile.TemporaryDirectory(prefix="bootree-policy-") as tmp:
        rings = [Path(p) for p in req.key_paths]
        if req.key_data is not None:
            rings.append(Path(tmp) / "keydata.gpg")
            rings[-1].write_bytes(req.key_data)
        with GpgVerifier(keyrings=rings) as verifier:
            for blob in blobs:
                check, payload = verifier.verify_message(blob, max_payload=MAX_SIGNATURE)
                if payload is None:
                    rejections.add(_check_status(check), f"GPG signature: {check.status} ({check.key})")
                    continue
                claim = _accepted_claim(payload, SIMPLE_SIGNING_TYPE, req, ref, top.data, rejections)
                if claim is not None:
                    return f"signedBy GPG key {check.key} for {claim.docker_reference}"
    raise rejections.fail(image, "signedBy")


def _sigstore_keys(req: SigstoreSigned, image: str) -> list[sigstore.SigstorePublicKey]:
    from bootree.sign import sigstore

    keys: list[sigstore.SigstorePublicKey] = []
    try:
        for p in req.key_paths:
            try:
                data = Path(p).read_bytes()
            except OSError as e:
                raise ContainerPolicyError(image, "config", f"cannot read sigstore public key {p}: {e.strerror}") from None
            keys += sigstore.load_public_keys(data, p)
        for i, data in enumerate(req.key_datas):
            keys += sigstore.load_public_keys(data, f"keyData[{i}]")
    except VerificationError as e:
        if isinstance(e, ContainerPolicyError):
            raise
        raise ContainerPolicyError(image, "config", str(e)) from None
    return keys


def _sigstore_signed(req: SigstoreSigned, image: str, ref: DockerReference | None, top: Fetched,
                     sigs: _Signatures) -> str:
    attachments = sigs.attachments()
    rejections = _Rejections()
    if not attachments:
        raise rejections.fail(image, "sigstoreSigned")
    keys = _sigstore_keys(req, image)
    from bootree.sign import sigstore

    for att in attachments:
        if att.media_type != SIGSTORE_MEDIA_TYPE:
            rejections.add("invalid", f"unsupported sigstore signature media type {att.media_type!r}")
            continue
        b64 = att.annotations.get(SIGSTORE_ANNOTATION)
        if b64 is None:
            rejections.add("invalid", f"sigstore signature without the {SIGSTORE_ANNOTATION} annotation")
            continue
        check = sigstore.verify(keys, att.payload, b64)
        if not check.valid:
            rejections.add(_check_status(check), f"sigstore signature: {check.status} ({check.key})")
            continue
        claim = _accepted_claim(att.payload, COSIGN_TYPE, req, ref, top.data, rejections)
        if claim is not None:
            return f"sigstoreSigned key {check.key} ({check.algorithm}) for {claim.docker_reference}"
    raise rejections.fail(image, "sigstoreSigned")


def _evaluate(req: Requirement, image: str, ref: DockerReference | None, top: Fetched, sigs: _Signatures) -> str:
    if isinstance(req, AcceptAnything):
        return "insecureAcceptAnything"
    if isinstance(req, SignedBy):
        return _signed_by(req, image, ref, top, sigs)
    if isinstance(req, SigstoreSigned):
        return _sigstore_signed(req, image, ref, top, sigs)
    raise ContainerPolicyError(image, "rejected", "rejected by policy (reject)")


def verify_image(image: ImageReference, source: ImageSource, options: PolicyOptions | None = None) -> Decision:
    """Check ``image`` (read through ``source``) against the policy; see the module docstring.

    Raises:
        ContainerPolicyError: the policy refuses the image, or its files are invalid.
        ImageError: a transport the policy cannot name (containers-storage...).
        RegistryError: the manifest or a signature could not be fetched.
    """
    opts = options or PolicyOptions()
    path = find_policy(opts.policy)
    policy = load_policy(path)
    name = str(image)
    if opts.refuse_insecure_default and policy.default_is_insecure:
        raise ContainerPolicyError(name, "rejected", f"{path} specifies a default of `insecureAcceptAnything`;"
                                   " refusing usage", hint='make the default [{"type": "reject"}] and allow scopes explicitly')
    ref: DockerReference | None = None
    if image.transport is Transport.REGISTRY:
        ref = image.docker
        transport, (identity, namespaces) = TRANSPORT_DOCKER, docker_scopes(ref)
    elif image.transport is Transport.OCI:
        transport, (identity, namespaces) = TRANSPORT_OCI, oci_scopes(os.path.realpath(image.layout_path_and_tag()[0]))
    else:
        raise ImageError(f"transport {image.transport.value!r} has no containers policy support in bootree")
    scope, reqs = policy.requirements_for(transport, identity, namespaces)
    where = f"{name} ({path}, {scope})"
    if any(isinstance(r, Reject) for r in reqs):
        raise ContainerPolicyError(where, "rejected", "rejected by policy (reject)")
    top = source.manifest(None)
    needs_registries = any(isinstance(r, SignedBy | SigstoreSigned) for r in reqs) and ref is not None
    registries = load_registries_d(registries_d_dir(opts.registries_d)) if needs_registries else None
    sigs = _Signatures(image, source, top.digest, registries, opts.timeout)
    try:
        accepted = tuple(_evaluate(r, where, ref, top, sigs) for r in reqs)
    finally:
        sigs.close()
    return Decision(image, top, str(path), scope, accepted)
