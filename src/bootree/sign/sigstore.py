"""cosign ("sigstore") signatures made with a key pair: check one against trusted public keys.

Layer: sign, over bytes, with ``cryptography``. A cosign signature of a container image is a
base64 signature (annotation ``dev.cosignproject.cosign/signature``) over the exact payload bytes
(a layer of the ``sha256-<digest>.sig`` manifest). As in sigstore's ``LoadVerifier`` with
SHA-256: ECDSA keys (cosign's default is P-256) check an ASN.1 DER signature over the payload
hashed with SHA-256; ed25519 keys check the payload itself; RSA keys check PKCS#1 v1.5 with
SHA-256. Public keys are PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo) blocks, as ``cosign
generate-key-pair`` writes them; a file may hold several.

Keyless signatures (Fulcio certificates, Rekor bundles) are not verified here: the policy
parser refuses such policies outright.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from bootree.errors import VerificationError
from bootree.sign.result import SignatureCheck

__all__ = ["SigstorePublicKey", "key_id", "load_public_keys", "verify"]

SigstorePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

_PEM = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)
#: A signature is a few hundred bytes at most (RSA-8192: 1 KiB); refuse absurd annotations early.
MAX_SIGNATURE = 16 << 10


def load_public_keys(data: bytes, where: str) -> list[SigstorePublicKey]:
    """Every ``PUBLIC KEY`` PEM block of ``data``.

    Raises:
        VerificationError: no key, a malformed block, or a key type sigstore does not use.
    """
    blocks = _PEM.findall(data)
    if not blocks:
        raise VerificationError(f"{where}: no PEM public key (-----BEGIN PUBLIC KEY-----)")
    out: list[SigstorePublicKey] = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise VerificationError(f"{where}: invalid public key: {e}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
            raise VerificationError(f"{where}: unsupported public key type {type(key).__name__}")
        out.append(key)
    return out


def key_id(key: SigstorePublicKey) -> str:
    """A short public identity for messages: SHA-256 of the DER SubjectPublicKeyInfo, 16 hex digits."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()[:16]


def _algorithm(key: SigstorePublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA-{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return f"RSA-{key.key_size}"


def _check(key: SigstorePublicKey, payload: bytes, signature: bytes) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, payload)
    else:
        key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())


def verify(keys: Sequence[SigstorePublicKey], payload: bytes, signature_b64: str) -> SignatureCheck:
    """Check a base64 cosign signature over ``payload`` against each trusted key.

    ``valid`` with the first key that verifies; else ``malformed`` (not base64) or
    ``untrusted`` (no trusted key made it: for a public-key signature, a wrong key and a
    tampered payload cannot be told apart).
    """
    if len(signature_b64) > MAX_SIGNATURE:
        return SignatureCheck("sigstore", False, "malformed", "signature annotation too large")
    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return SignatureCheck("sigstore", False, "malformed", "signature is not base64")
    for key in keys:
        try:
            _check(key, payload, sig)
        except (InvalidSignature, ValueError):
            continue
        return SignatureCheck("sigstore", True, "good", key_id(key), algorithm=_algorithm(key))
    return SignatureCheck("sigstore", False, "untrusted", "no trusted public key verifies it")
