"""cosign signatures with a key pair: ECDSA P-256 (cosign's default), ed25519 and RSA."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from bootree.errors import VerificationError
from bootree.sign import sigstore

PAYLOAD = b'{"critical":{"identity":{"docker-reference":"r.example/a"},"image":{"docker-manifest-digest":"sha256:00"},' \
          b'"type":"cosign container image signature"},"optional":null}'


def _pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _sign(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey, data: bytes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(data)
    else:
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


@pytest.mark.parametrize("make", [lambda: ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate,
                                  lambda: rsa.generate_private_key(65537, 2048)], ids=["p256", "ed25519", "rsa"])
def test_accepts_own_key_only(make: object) -> None:
    key, other = make(), make()  # type: ignore[operator]
    keys = sigstore.load_public_keys(_pem(key), "k.pub")
    good = sigstore.verify(keys, PAYLOAD, _sign(key, PAYLOAD))
    assert good.valid and good.key == sigstore.key_id(keys[0]) and good.engine == "sigstore"
    assert sigstore.verify(keys, PAYLOAD + b" ", _sign(key, PAYLOAD)).status == "untrusted"
    assert sigstore.verify(keys, PAYLOAD, _sign(other, PAYLOAD)).status == "untrusted"
    # Several keys in one file (key rotation): either verifies.
    both = sigstore.load_public_keys(_pem(other) + b"\n" + _pem(key), "both.pub")
    assert len(both) == 2 and sigstore.verify(both, PAYLOAD, _sign(key, PAYLOAD)).valid


def test_malformed_input() -> None:
    keys = sigstore.load_public_keys(_pem(ec.generate_private_key(ec.SECP256R1())), "k")
    assert sigstore.verify(keys, PAYLOAD, "***").status == "malformed"
    assert sigstore.verify(keys, PAYLOAD, "A" * (sigstore.MAX_SIGNATURE + 4)).status == "malformed"
    assert sigstore.verify(keys, PAYLOAD, base64.b64encode(b"short").decode()).status == "untrusted"
    with pytest.raises(VerificationError, match="no PEM public key"):
        sigstore.load_public_keys(b"ssh-ed25519 AAAA", "k")
    with pytest.raises(VerificationError, match="invalid public key"):
        sigstore.load_public_keys(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "k")
