"""Signed static-delta superblocks, as ``ostree static-delta generate --sign`` makes them.

Layer: sign. A signed superblock file wraps the plain superblock's bytes with signatures over
exactly those bytes (:class:`bootree.format.delta.SignedSuperblock`); the signature dictionary
has the shape of detached metadata (``ostree.sign.ed25519`` → ``aay``), so the ed25519 check is
the commit check over other bytes. The superblock embeds the ``to`` commit and the digest of
every part, so one valid signature vouches for the whole delta.
"""

from __future__ import annotations

from collections.abc import Sequence

from bootree.errors import SignatureError
from bootree.format.delta import SignedSuperblock
from bootree.format.gvariant import Variant
from bootree.sign import detached, dummy, ed25519
from bootree.sign.ed25519 import SecretKey
from bootree.sign.verifier import Verifier

__all__ = ["SIGN_TYPES", "is_signed", "sign_superblock", "verify_superblock"]

#: Signature types a delta can carry (``dummy`` only with ``OSTREE_DUMMY_SIGN_ENABLED=1``).
SIGN_TYPES = ("ed25519", "dummy")


def sign_superblock(data: bytes, *, ed25519_keys: Sequence[SecretKey] = (), dummy_keys: Sequence[str] = ()) -> bytes:
    """The signed superblock file of plain superblock ``data``, one signature per key.

    Raises:
        SignatureError: dummy keys while the dummy engine is disabled.
    """
    entries: list[tuple[str, Variant]] = []
    if ed25519_keys:
        entries.append((ed25519.METADATA_KEY, Variant("aay", [k.sign(data) for k in ed25519_keys])))
    if dummy_keys:
        dummy.require_enabled()
        entries.append((dummy.METADATA_KEY, Variant("aay", [dummy.sign(k) for k in dummy_keys])))
    return SignedSuperblock(data, tuple(entries)).to_bytes()


def is_signed(data: bytes) -> bool:
    """Whether a superblock file is signed (the magic, and at least one ``ostree.sign.*`` key)."""
    signed = SignedSuperblock.from_bytes(data)
    return signed is not None and bool(signed.engines)


def verify_superblock(
    subject: str,
    data: bytes,
    *,
    sign_type: str = "ed25519",
    verifier: Verifier | None = None,
    dummy_key: str | None = None,
) -> SignedSuperblock:
    """Check a superblock file's signatures of ``sign_type``; return the unwrapped value.

    ``ed25519`` checks against ``verifier``'s trusted (and revoked) keys; ``dummy`` compares with
    ``dummy_key``. Error texts are libostree's where its tests read them.

    Raises:
        SignatureError: unsigned, no signature of that type, no trusted key, or none valid.
    """
    signed = SignedSuperblock.from_bytes(data)
    if signed is None or not signed.engines:
        raise SignatureError(subject, "unsigned", "no signatures in static-delta")
    key = f"ostree.sign.{sign_type}"
    if sign_type not in SIGN_TYPES:
        raise SignatureError(subject, "untrusted", f"signing type {sign_type} is not supported")
    if not any(k == key for k, _v in signed.signatures):
        raise SignatureError(subject, "unsigned", f"no signature for '{key}' in static-delta superblock")
    sigs = signed.signatures_of(key)
    if sign_type == "dummy":
        if dummy_key is None:
            raise SignatureError(subject, "untrusted", "signature: dummy: no key to verify with")
        dummy.verify_key(subject, sigs, dummy_key)
        return signed
    if verifier is None or not verifier.ed25519:
        raise SignatureError(subject, "untrusted", "signature: ed25519: no keys loaded",
                             hint="give public keys as arguments, --keys-file=FILE or --keys-dir=DIR")
    meta = detached.encode([(key, Variant("aay", sigs))])
    verifier.check(subject, signed.superblock, meta, require_ed25519=True)
    return signed
