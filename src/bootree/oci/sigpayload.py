"""The signed claims inside container signatures: "simple signing" and cosign payloads.

Layer: oci, pure. containers-signature(5): a GPG "simple signing" signature carries, as its
signed literal data, a JSON document::

    {"critical": {"identity": {"docker-reference": "host/repo:tag"},
                  "image": {"docker-manifest-digest": "sha256:..."},
                  "type": "atomic container signature"},
     "optional": {"creator": "...", "timestamp": 1700000000}}

A cosign ("sigstore") signature signs the same shape with ``type`` ``cosign container image
signature`` (its ``optional`` may be ``null``). The format asks for strict parsing: exactly the
known members in ``critical`` and its objects, the right types, no duplicated member (a reader
that took the first of two ``docker-manifest-digest`` members and a signer that took the last
would disagree). Parsing only ever happens after the cryptographic check succeeded.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from bootree.errors import FormatError

__all__ = ["COSIGN_TYPE", "SIMPLE_SIGNING_TYPE", "SignedClaim", "digest_matches", "make_payload", "no_duplicates",
           "parse_claim"]

SIMPLE_SIGNING_TYPE = "atomic container signature"
COSIGN_TYPE = "cosign container image signature"

_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})")


@dataclass(frozen=True, slots=True)
class SignedClaim:
    """What a verified signature says: this manifest digest, under this identity."""

    manifest_digest: str
    docker_reference: str
    creator: str | None = None
    timestamp: int | None = None


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` ``object_pairs_hook``: a member named twice is an error (``ValueError``).

    containers/image parses these documents "paranoidly"; Python's default keeps the last
    duplicate silently, which another reader might not.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = value
    return out


def _exact(value: object, what: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"signature payload: {what} must be a JSON object")
    if set(value) != set(keys):
        extra = sorted(set(value) - set(keys))
        missing = sorted(set(keys) - set(value))
        raise FormatError(f"signature payload: {what} has " +
                          (f"unexpected member {extra[0]!r}" if extra else f"no member {missing[0]!r}"))
    return value


def parse_claim(payload: bytes, expected_type: str) -> SignedClaim:
    """The claim of a verified payload whose ``critical.type`` must be ``expected_type``.

    Raises:
        FormatError: for anything but a well-formed claim of that type.
    """
    try:
        doc = json.loads(payload, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        raise FormatError(f"signature payload: {e}") from None
    top = _exact(doc, "the document", ("critical", "optional"))
    critical = _exact(top["critical"], "critical", ("type", "image", "identity"))
    if critical["type"] != expected_type:
        raise FormatError(f"signature payload: type {critical['type']!r}, expected {expected_type!r}")
    image = _exact(critical["image"], "critical.image", ("docker-manifest-digest",))
    identity = _exact(critical["identity"], "critical.identity", ("docker-reference",))
    digest, ref = image["docker-manifest-digest"], identity["docker-reference"]
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise FormatError(f"signature payload: invalid docker-manifest-digest {digest!r}")
    if not isinstance(ref, str) or not ref:
        raise FormatError("signature payload: docker-reference must be a non-empty string")
    optional = top["optional"]
    creator = timestamp = None
    if optional is None and expected_type == COSIGN_TYPE:
        optional = {}
    if not isinstance(optional, dict):
        raise FormatError("signature payload: optional must be a JSON object")
    if "creator" in optional:
        if not isinstance(optional["creator"], str):
            raise FormatError("signature payload: optional.creator must be a string")
        creator = optional["creator"]
    if "timestamp" in optional:
        ts = optional["timestamp"]
        if isinstance(ts, float) and ts.is_integer():
            ts = int(ts)
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise FormatError("signature payload: optional.timestamp is not an integer")
        timestamp = ts
    return SignedClaim(digest, ref, creator, timestamp)


def digest_matches(manifest: bytes, digest: str) -> bool:
    """Whether ``digest`` (``algo:hex``) is a digest of these exact manifest bytes."""
    algo, _, hexd = digest.partition(":")
    if algo not in ("sha256", "sha384", "sha512"):
        return False
    return hashlib.new(algo, manifest).hexdigest() == hexd


def make_payload(manifest_digest: str, docker_reference: str, *, kind: str = SIMPLE_SIGNING_TYPE,
                 creator: str = "bootree", timestamp: int | None = None) -> bytes:
    """A payload to sign (tests and tools make signatures in the format with it)."""
    optional: dict[str, Any] = {"creator": creator}
    if timestamp is not None:
        optional["timestamp"] = timestamp
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": manifest_digest}, "type": kind},
           "optional": optional}
    return json.dumps(doc, separators=(",", ":")).encode()
