"""A remote's signature policy from its config keys (ostree's names) and key files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootree.errors import SignatureError, SummaryExpired, VerificationError
from bootree.format.gvariant import Variant
from bootree.format.objects import bswap64
from bootree.format.summary import Summary
from bootree.pull.remote import Remote
from bootree.pull.trust import SUMMARY_EXPIRES_KEY, check_summary_expiry, gpg_keyrings, policy_for_remote
from bootree.sign import SecretKey, add_ed25519

A, B, C = (SecretKey.from_seed(bytes([i]) * 32) for i in (1, 2, 3))


def _remote(**opts: str) -> Remote:
    return Remote("origin", (("url", "http://x"), *opts.items()))


def test_defaults_follow_ostree(tmp_path: Path) -> None:
    p = policy_for_remote(tmp_path, _remote(), ed25519_dirs=[], gpg_dir=tmp_path / "none")
    assert p.gpg_verify and not p.gpg_verify_summary and not p.sign_verify and not p.sign_verify_summary
    with pytest.raises(VerificationError, match="no trusted GPG key"):
        p.check_configured()


def test_keys_files_dirs_and_revocation(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"{B.public.base64}\n")
    sysdir = tmp_path / "etc-ostree"
    (sysdir / "trusted.ed25519.d").mkdir(parents=True)
    (sysdir / "trusted.ed25519.d" / "vendor").write_text(C.public.base64 + "\n")
    (sysdir / "revoked.ed25519").write_text(A.public.base64 + "\n")
    opts = {"gpg-verify": "false", "sign-verify": "ed25519", "sign-verify-summary": "true"}
    p = policy_for_remote(
        tmp_path, _remote(**opts, **{"verification-ed25519-key": A.public.base64, "verification-ed25519-file": str(keyfile)}),
        ed25519_dirs=[sysdir],
    )
    p.check_configured()
    assert p.sign_verify and p.sign_verify_summary and p.verifies_commits and p.verifies_summary
    assert p.verifier.ed25519 == (A.public, B.public)  # system trusted keys only without remote keys
    assert p.verifier.revoked == (A.public,)
    data = b"commit"
    p.commit_signatures("c", data, add_ed25519(data, None, [B]))
    with pytest.raises(SignatureError) as exc:
        p.commit_signatures("c", data, add_ed25519(data, None, [A]))
    assert exc.value.reason == "revoked"
    only_sys = policy_for_remote(tmp_path, _remote(**opts), ed25519_dirs=[sysdir])
    assert only_sys.verifier.ed25519 == (C.public,)


def test_bad_config_values(tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="Requested signature type is not implemented"):
        policy_for_remote(tmp_path, _remote(**{"sign-verify": "rsa"}), ed25519_dirs=[])
    with pytest.raises(VerificationError, match="verification-ed25519-key"):
        policy_for_remote(tmp_path, _remote(**{"verification-ed25519-key": "nope"}), ed25519_dirs=[])
    with pytest.raises(VerificationError, match="cannot read"):
        policy_for_remote(tmp_path, _remote(**{"verification-ed25519-file": str(tmp_path / "missing")}), ed25519_dirs=[])
    with pytest.raises(VerificationError, match="gpgkeypath"):
        gpg_keyrings(tmp_path, _remote(gpgkeypath=str(tmp_path / "missing.gpg")))
    p = policy_for_remote(tmp_path, _remote(**{"gpg-verify": "false", "sign-verify": "true"}), ed25519_dirs=[])
    with pytest.raises(VerificationError, match="no trusted ed25519 key"):
        p.check_configured()


def test_gpg_keyring_search_order(tmp_path: Path) -> None:
    own = tmp_path / "origin.trustedkeys.gpg"
    own.write_bytes(b"k")
    d = tmp_path / "keys.d"
    d.mkdir()
    (d / "b.gpg").write_bytes(b"k")
    (d / "a.asc").write_bytes(b"k")
    (d / "README").write_text("not a key")
    single = tmp_path / "single.gpg"
    single.write_bytes(b"k")
    glob = tmp_path / "global"
    glob.mkdir()
    (glob / "distro.gpg").write_bytes(b"k")
    found = gpg_keyrings(tmp_path, _remote(gpgkeypath=f"{d};{single}"), global_dir=glob)
    assert found == [own, d / "a.asc", d / "b.gpg", single, glob / "distro.gpg"]


def test_summary_expiry() -> None:
    s = Summary(metadata=((SUMMARY_EXPIRES_KEY, Variant("t", bswap64(1000))),))
    check_summary_expiry("u", s, now=999)
    check_summary_expiry("u", Summary(), now=10**10)
    with pytest.raises(SummaryExpired, match="expired at 1000"):
        check_summary_expiry("u", s, now=1001)
