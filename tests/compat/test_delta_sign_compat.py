"""Signed static deltas against the real ostree 2022.7, both ways.

Debian's ostree 2022.7 is built without libsodium (no ed25519), so the signature check that
both tools can run is ostree's test-only ``dummy`` type (``OSTREE_DUMMY_SIGN_ENABLED=1``); the
container format around it (``(taya{sv})``, magic ``OSTSGNDT``) is the same for every type:

* ``ostree static-delta verify`` accepts a bootree-signed superblock (dummy) and refuses a bad
  key; ``ostree static-delta show`` says ``Signed: yes``; ``ostree static-delta apply-offline``
  applies an ed25519-signed bootree offline update file, and the repository fscks clean;
* bootree verifies and applies the deltas ostree signs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bootree.delta import DeltaOptions, apply_offline, generate_delta
from bootree.errors import SignatureError
from bootree.format.delta import DeltaName, SignedSuperblock
from bootree.pull import pull_local
from bootree.repo import Repo, RepoMode
from bootree.sign import SecretKey
from bootree.sign.delta import sign_superblock, verify_superblock
from delta_builders import Pair, make_pair

pytestmark = [pytest.mark.compat, pytest.mark.skipif(shutil.which("ostree") is None, reason="needs ostree")]

DUMMY_ENV = {**os.environ, "OSTREE_DUMMY_SIGN_ENABLED": "1"}


def ostree(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ostree", *map(str, args)], check=ok, capture_output=True, text=True, env=DUMMY_ENV)


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path)


def test_ostree_verifies_and_shows_bootree_signed_deltas(
    tmp_path: Path, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSTREE_DUMMY_SIGN_ENABLED", "1")
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=DeltaOptions(min_fallback_size=0),
                         sign=lambda data: sign_superblock(data, dummy_keys=["dummysign"]))
    repo = f"--repo={pair.repo.path}"
    out = ostree(repo, "static-delta", "verify", "--sign-type=dummy", str(res.name), "dummysign")
    assert "Verification OK" in out.stdout
    bad = ostree(repo, "static-delta", "verify", "--sign-type=dummy", str(res.name), "badsign", ok=False)
    assert bad.returncode != 0 and "Verification fails" in bad.stdout
    assert "Signed: yes" in ostree(repo, "static-delta", "show", str(res.name)).stdout


def test_ostree_applies_an_ed25519_signed_offline_file(tmp_path: Path, pair: Pair) -> None:
    key = SecretKey.from_seed(bytes(range(32)))
    path = tmp_path / "usb" / "update.delta"
    path.parent.mkdir()
    generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=DeltaOptions(min_fallback_size=0, inline=True),
                   filename=path, sign=lambda data: sign_superblock(data, ed25519_keys=[key]))
    dst = tmp_path / "o-dst"
    ostree(f"--repo={dst}", "init", "--mode=bare-user")
    ostree(f"--repo={dst}", "pull-local", pair.repo.path, pair.v1)
    ostree(f"--repo={dst}", "static-delta", "apply-offline", path)  # no libsodium: applied unchecked
    assert "no errors found" in ostree(f"--repo={dst}", "fsck").stdout
    assert Repo.open(dst).fsck().ok


def test_bootree_verifies_and_applies_ostree_signed_deltas(
    tmp_path: Path, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSTREE_DUMMY_SIGN_ENABLED", "1")
    src = f"--repo={pair.repo.path}"
    ostree(src, "static-delta", "generate", "--min-fallback-size=0", f"--from={pair.v1}", f"--to={pair.v2}",
           "--sign-type=dummy", "--sign=dummysign")
    data = (pair.repo.path / DeltaName(pair.v1, pair.v2).superblock_relpath).read_bytes()
    signed = SignedSuperblock.from_bytes(data)
    assert signed is not None and signed.engines == ("dummy",)
    verify_superblock("d", data, sign_type="dummy", dummy_key="dummysign")
    with pytest.raises(SignatureError):
        verify_superblock("d", data, sign_type="dummy", dummy_key="badsign")
    dst = Repo.init(tmp_path / "dst", mode=RepoMode.BARE_USER)
    pull_local(dst, pair.repo.path, [pair.v1])
    apply_offline(dst, pair.repo.path / DeltaName(pair.v1, pair.v2).superblock_relpath,
                  check_signature=lambda d: verify_superblock("d", d, sign_type="dummy", dummy_key="dummysign"))
    assert dst.fsck().ok and dst.read_commit(pair.v2) == pair.repo.read_commit(pair.v2)
