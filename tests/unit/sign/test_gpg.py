"""GPG signatures through the gpg program: sign, verify, trust only the given keyrings."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import GpgKey

from bootree.errors import SignatureError
from bootree.sign import GpgVerifier, Verifier, add_gpg, detached
from bootree.sign.gpg import export_keys, sign

DATA = b"the exact bytes of a commit object"


def test_sign_and_verify(gpg_key: GpgKey) -> None:
    sig = sign(DATA, gpg_key.fingerprint, homedir=gpg_key.home)
    assert sig[:1] != b"-"  # binary, not armored
    with GpgVerifier(keyrings=[gpg_key.public_keyring]) as v:
        (check,) = v.verify(DATA, [sig])
        assert check.valid and check.status == "good" and check.key == gpg_key.fingerprint
        assert check.user == "bootree test <test@bootree.invalid>" and check.timestamp and check.algorithm == "EdDSA"
        (bad,) = v.verify(DATA + b"x", [sig])
        assert not bad.valid and bad.status == "bad"
    # The signer's own home also verifies (ostree show --gpg-homedir).
    with GpgVerifier(homedir=gpg_key.home) as v:
        assert v.verify(DATA, [sig])[0].valid


def test_two_signatures_and_untrusted(gpg_key: GpgKey, other_gpg_key: GpgKey) -> None:
    meta = add_gpg(DATA, None, [gpg_key.fingerprint], homedir=gpg_key.home)
    meta = add_gpg(DATA, meta, [other_gpg_key.fingerprint], homedir=other_gpg_key.home)
    sigs = detached.signatures(detached.decode(meta), detached.GPG_KEY)
    assert len(sigs) == 2
    with GpgVerifier(keyrings=[gpg_key.public_keyring]) as v:
        checks = v.verify(DATA, sigs)
        assert [c.status for c in checks] == ["good", "untrusted"]
        Verifier(gpg=v).check("commit c", DATA, meta, require_gpg=True)
    only_other = add_gpg(DATA, None, [other_gpg_key.fingerprint], homedir=other_gpg_key.home)
    with GpgVerifier(keyrings=[gpg_key.public_keyring]) as v, pytest.raises(SignatureError) as exc:
        Verifier(gpg=v).check("commit c", DATA, only_other, require_gpg=True)
    assert exc.value.reason == "untrusted" and str(exc.value).startswith("commit c: GPG signature: untrusted")


def test_garbage_signature_and_unsigned(gpg_key: GpgKey) -> None:
    with GpgVerifier(keyrings=[gpg_key.public_keyring]) as v:
        assert v.verify(DATA, [b"not a signature"])[0].status == "malformed"
        with pytest.raises(SignatureError) as exc:
            Verifier(gpg=v).check("commit c", DATA, None, require_gpg=True)
        assert exc.value.reason == "unsigned"


def test_sign_with_unknown_key(gpg_key: GpgKey) -> None:
    with pytest.raises(SignatureError, match="gpg could not sign"):
        sign(DATA, "0123456789ABCDEF0123456789ABCDEF01234567", homedir=gpg_key.home)


def test_export_keys(gpg_key: GpgKey, tmp_path: Path) -> None:
    ring = tmp_path / "ring.gpg"
    ring.write_bytes(export_keys([gpg_key.public_keyring]))
    with GpgVerifier(keyrings=[ring]) as v:
        assert v.verify(DATA, [sign(DATA, gpg_key.fingerprint, homedir=gpg_key.home)])[0].valid
    assert export_keys([], homedir=gpg_key.home, key_ids=[gpg_key.fingerprint])
