"""Signing and checking static-delta superblocks: ed25519 (valid, wrong key, revoked) and ostree's dummy type."""

from __future__ import annotations

import pytest

from bootree.errors import SignatureError
from bootree.format.delta import SignedSuperblock
from bootree.format.gvariant import Variant
from bootree.sign import SecretKey, Verifier
from bootree.sign.delta import is_signed, sign_superblock, verify_superblock

KEY = SecretKey.from_seed(bytes(range(32)))
OTHER = SecretKey.from_seed(bytes(range(1, 33)))
DATA = b"a plain superblock's bytes"


def test_ed25519_signed_superblock_verifies_with_the_right_key_only() -> None:
    data = sign_superblock(DATA, ed25519_keys=[KEY, OTHER])
    assert is_signed(data) and not is_signed(DATA)
    signed = verify_superblock("d", data, verifier=Verifier(ed25519=(OTHER.public,)))
    assert signed.superblock == DATA and len(signed.signatures_of("ostree.sign.ed25519")) == 2
    third = SecretKey.from_seed(bytes(32))
    with pytest.raises(SignatureError) as exc:
        verify_superblock("d", data, verifier=Verifier(ed25519=(third.public,)))
    assert exc.value.reason == "untrusted"
    with pytest.raises(SignatureError) as exc:  # revocation wins over trust
        verify_superblock("d", sign_superblock(DATA, ed25519_keys=[KEY]),
                          verifier=Verifier(ed25519=(KEY.public,), revoked=(KEY.public,)))
    assert exc.value.reason == "revoked"


def test_a_signature_over_other_bytes_fails() -> None:
    signed = SignedSuperblock.from_bytes(sign_superblock(DATA, ed25519_keys=[KEY]))
    assert signed is not None
    forged = SignedSuperblock(DATA + b"!", signed.signatures).to_bytes()
    with pytest.raises(SignatureError):
        verify_superblock("d", forged, verifier=Verifier(ed25519=(KEY.public,)))


def test_unsigned_and_other_engine_messages_are_ostree_s() -> None:
    with pytest.raises(SignatureError, match="no signatures in static-delta"):
        verify_superblock("d", DATA, verifier=Verifier(ed25519=(KEY.public,)))
    with pytest.raises(SignatureError, match=r"no signature for 'ostree\.sign\.ed25519'"):
        verify_superblock("d", SignedSuperblock(DATA, (("ostree.sign.dummy", Variant("aay", [b"k"])),)).to_bytes(),
                          verifier=Verifier(ed25519=(KEY.public,)))
    with pytest.raises(SignatureError, match="no signatures in static-delta"):
        verify_superblock("d", SignedSuperblock(DATA, ()).to_bytes(), verifier=Verifier(ed25519=(KEY.public,)))


def test_dummy_type_needs_the_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSTREE_DUMMY_SIGN_ENABLED", raising=False)
    with pytest.raises(SignatureError, match="only for ostree testing"):
        sign_superblock(DATA, dummy_keys=["k"])
    monkeypatch.setenv("OSTREE_DUMMY_SIGN_ENABLED", "1")
    data = sign_superblock(DATA, dummy_keys=["dummysign"])
    verify_superblock("d", data, sign_type="dummy", dummy_key="dummysign")
    with pytest.raises(SignatureError, match="incorrect signatures found: 1"):
        verify_superblock("d", data, sign_type="dummy", dummy_key="badsign")
