"""The initramfs's ed25519 commit check (busybox sh + bc), against the ``cryptography`` package.

Every case runs the very script the initramfs sources (:data:`rootsign.SIGNED_SH`) and bc program
(:data:`rootsign.ED25519_BC`) with the host's busybox, over detached metadata written by bootree's
own ``sign.detached`` encoder, as ``bootree sign`` writes it.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bootree.format.gvariant import Variant
from bootree.install import rootsign
from bootree.sign import detached

L = 2**252 + 27742317777372353535851937790883648493


@pytest.fixture
def busybox() -> str:
    bb = shutil.which("busybox")
    if bb is None:
        pytest.skip("busybox is not installed (Debian: busybox-static)")
    return bb


def _pub(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check(busybox: str, tmp_path: Path, commit: bytes, sigs: list[bytes], keys: list[bytes]) -> tuple[int, str]:
    """Run check_signed over a commit file, its .commitmeta and a key file; (rc, stdout)."""
    (tmp_path / "lib/bootree").mkdir(parents=True, exist_ok=True)
    bc = tmp_path / "ed25519.bc"
    bc.write_text(rootsign.ED25519_BC)
    (tmp_path / "ab.commit").write_bytes(commit)
    meta = [("ostree.gpgsigs", Variant("aay", [os.urandom(90)]))]
    meta = detached.add_signatures(meta, "ostree.sign.ed25519", sigs)
    (tmp_path / "ab.commitmeta").write_bytes(detached.encode(meta))
    (tmp_path / "keys").write_text("# trusted\n" + "".join(base64.b64encode(k).decode() + "\n" for k in keys))
    script = rootsign.SIGNED_SH.replace("ED25519_BC=/lib/bootree/ed25519.bc", f"ED25519_BC={bc}")
    script += f'check_signed {tmp_path}/ab.commit {tmp_path}/keys\n'
    proc = subprocess.run([busybox, "sh", "-c", script], capture_output=True, text=True, check=False, timeout=120)
    return proc.returncode, proc.stdout.strip()


@pytest.mark.slow
def test_check_signed(busybox: str, tmp_path: Path) -> None:
    good, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    commit = os.urandom(777)
    sig = good.sign(commit)
    good_b64 = base64.b64encode(_pub(good)).decode()
    # a valid signature by the trusted key, after a signature by another key (key rotation)
    assert _check(busybox, tmp_path, commit, [other.sign(commit), sig], [_pub(good)]) == (0, good_b64)
    # signed, but only by a key the initramfs does not trust
    assert _check(busybox, tmp_path, commit, [other.sign(commit)], [_pub(good)])[0] == 1
    # the commit changed after signing
    assert _check(busybox, tmp_path, commit + b"x", [sig], [_pub(good)])[0] == 1
    # S + L: the same point equation, but not canonical (RFC 8032 requires S < L)
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    assert _check(busybox, tmp_path, commit, [sig[:32] + s.to_bytes(32, "little")], [_pub(good)])[0] == 1
    # a "key" that is not a curve point (y = 2 has no x on edwards25519)
    assert _check(busybox, tmp_path, commit, [sig], [(2).to_bytes(32, "little")])[0] == 1


def test_unsigned_commit_is_refused(busybox: str, tmp_path: Path) -> None:
    assert _check(busybox, tmp_path, b"commit", [], [_pub(Ed25519PrivateKey.generate())])[0] == 2
