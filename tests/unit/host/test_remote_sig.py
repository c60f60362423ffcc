"""The commit check of ``ostree-remote-image:REMOTE:…``: the remote's policy, as
``ostree_repo_signature_verify_commit_data`` applies it (both engines when both are on; neither
is an error), with real ed25519 signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootree.errors import RemoteNotFound, SignatureError, VerificationError
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit
from bootree.host.remote_sig import find_remote, remote_commit_check
from bootree.pull.remote import add_remote
from bootree.sign import SecretKey
from bootree.sign.verifier import add_ed25519
from bootree.sysroot import Sysroot, ops

COMMIT = Commit(root_tree=Checksum("a" * 64), root_meta=Checksum("b" * 64), subject="x").to_bytes()
CSUM = Checksum("c" * 64)


def _sysroot(tmp_path: Path, **options: str) -> Sysroot:
    ops.init_fs(tmp_path / "sysroot")
    s = Sysroot.open(tmp_path / "sysroot")
    add_remote(s.repo.config, "fleet", "https://unused.invalid/", options=list(options.items()))
    s.repo.save_config()
    return Sysroot.open(tmp_path / "sysroot")


def test_ed25519_remote(tmp_path: Path) -> None:
    key, other = SecretKey.generate(), SecretKey.generate()
    s = _sysroot(tmp_path, **{"gpg-verify": "false", "sign-verify": "ed25519",
                              "verification-ed25519-key": key.public.base64})
    with remote_commit_check(s, "fleet", ed25519_dirs=()) as check:
        check(CSUM, COMMIT, add_ed25519(COMMIT, None, [key]))
        with pytest.raises(SignatureError, match="without detached metadata") as e:
            check(CSUM, COMMIT, None)
        assert e.value.reason == "unsigned"
        with pytest.raises(SignatureError) as e:
            check(CSUM, COMMIT, add_ed25519(COMMIT, None, [other]))
        assert e.value.reason == "untrusted"
        with pytest.raises(SignatureError):  # a trusted signature of other bytes
            check(CSUM, COMMIT, add_ed25519(COMMIT + b"x", None, [key]))


def test_remote_without_any_verification_is_refused(tmp_path: Path) -> None:
    s = _sysroot(tmp_path, **{"gpg-verify": "false"})
    with remote_commit_check(s, "fleet", ed25519_dirs=()) as check, \
            pytest.raises(VerificationError, match="GPG verification disabled, and no signapi verifiers"):
        check(CSUM, COMMIT, add_ed25519(COMMIT, None, [SecretKey.generate()]))


def test_missing_keys_fail_before_any_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTREE_GPG_HOME", str(tmp_path / "none"))
    s = _sysroot(tmp_path)  # gpg-verify defaults to true, no keyring
    with pytest.raises(VerificationError, match="no trusted GPG key"):
        with remote_commit_check(s, "fleet", ed25519_dirs=()):
            pass
    with pytest.raises(RemoteNotFound):
        with remote_commit_check(s, "nosuch"):
            pass


def test_remote_from_remotes_d(tmp_path: Path) -> None:
    ops.init_fs(tmp_path / "sysroot")
    d = tmp_path / "sysroot/etc/ostree/remotes.d"
    d.mkdir(parents=True)
    (d / "fleet.conf").write_text('[remote "fleet"]\nurl=https://x.invalid/\ngpg-verify=false\n')
    s = Sysroot.open(tmp_path / "sysroot")
    assert find_remote(s, "fleet").get("gpg-verify") == "false"
    with pytest.raises(RemoteNotFound):
        find_remote(s, "other")
