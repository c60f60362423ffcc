"""GPG signature interop with the real ostree 2022.7, both ways, over HTTP on 127.0.0.1.

* ostree signs a commit (``commit --gpg-sign``) and the summary (``summary -u --gpg-sign``);
  bootree pulls with ``gpg-verify=true`` and ``gpg-verify-summary=true`` after
  ``remote gpg-import``, and ``bootree show`` reports the good signature.
* bootree signs (``commit --gpg-sign``, ``gpg-sign``, ``summary -u --gpg-sign``); ostree pulls
  with the same settings, and ``ostree show --gpg-homedir`` reports "Good signature".

(Debian's ostree has no ed25519: those signatures are checked against vectors in
tests/unit/sign/test_ed25519.py.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import GpgKey

from bootree.cli import main
from bootree.repo import Repo
from bootree.transport.server import StaticServer

pytestmark = [pytest.mark.compat, pytest.mark.skipif(shutil.which("ostree") is None, reason="needs ostree")]


def ostree(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ostree", *map(str, args)], check=check, capture_output=True, text=True)


def bootree(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _tree(root: Path, n: int) -> Path:
    d = root / f"tree{n}"
    (d / "usr" / "lib").mkdir(parents=True)
    (d / "usr" / "lib" / "os-release").write_text(f"VERSION_ID={n}\n")
    (d / "usr" / "lib" / "data").write_bytes(bytes(range(256)) * (n + 1))
    return d


def _keyring_dir(key: GpgKey, tmp_path: Path) -> Path:
    """A directory with the public keyring, as ``ostree show --gpg-homedir`` reads it."""
    d = tmp_path / "trusted"
    d.mkdir()
    shutil.copy(key.public_keyring, d / "pubring.gpg")
    return d


def test_ostree_signs_bootree_verifies(tmp_path: Path, gpg_key: GpgKey, capsys: pytest.CaptureFixture[str]) -> None:
    pub = tmp_path / "pub"
    ostree("init", f"--repo={pub}", "--mode=archive")
    commit = ostree(
        "commit", f"--repo={pub}", "-b", "os/main", f"--tree=dir={_tree(tmp_path, 1)}", "-s", "one",
        f"--gpg-sign={gpg_key.fingerprint}", f"--gpg-homedir={gpg_key.home}",
    ).stdout.strip()
    ostree("summary", f"--repo={pub}", "-u", f"--gpg-sign={gpg_key.fingerprint}", f"--gpg-homedir={gpg_key.home}")
    assert (pub / "summary.sig").exists()
    client = tmp_path / "client"
    assert bootree(capsys, "init", f"--repo={client}", "--mode=archive")[0] == 0
    with StaticServer(pub) as srv:
        assert bootree(capsys, "remote", "add", f"--repo={client}", "--set=gpg-verify=true",
                       "--set=gpg-verify-summary=true", "origin", srv.url)[0] == 0
        rc, _out, err = bootree(capsys, "pull", f"--repo={client}", "origin", "os/main")
        assert rc == 1 and "no trusted GPG key" in err  # fails closed before any download
        rc, out, err = bootree(capsys, "remote", "gpg-import", f"--repo={client}", "origin", "-k", gpg_key.public_keyring)
        assert rc == 0 and 'Imported 1 GPG key to remote "origin"' in out, err
        rc, out, err = bootree(capsys, "pull", f"--repo={client}", "origin", "os/main")
        assert rc == 0, err
    assert Repo.open(client).refs.get("origin:os/main") == commit
    rc, out, _ = bootree(capsys, "show", f"--repo={client}", "--gpg-verify-remote=origin", commit)
    assert rc == 0 and "Found 1 signature:" in out and 'Good signature from "bootree test <test@bootree.invalid>"' in out
    assert gpg_key.fingerprint in out


def test_bootree_signs_ostree_verifies(tmp_path: Path, gpg_key: GpgKey, capsys: pytest.CaptureFixture[str]) -> None:
    pub = tmp_path / "pub"
    home = ["--gpg-homedir", str(gpg_key.home)]
    assert bootree(capsys, "init", f"--repo={pub}", "--mode=archive")[0] == 0
    rc, out, err = bootree(capsys, "commit", f"--repo={pub}", "-b", "os/main", f"--tree=dir={_tree(tmp_path, 1)}",
                           "-s", "one", f"--gpg-sign={gpg_key.fingerprint}", *home)
    assert rc == 0, err
    first = out.strip()
    rc, out, err = bootree(capsys, "commit", f"--repo={pub}", "-b", "os/main", f"--tree=dir={_tree(tmp_path, 2)}", "-s", "two")
    second = out.strip()
    assert bootree(capsys, "gpg-sign", f"--repo={pub}", second, gpg_key.fingerprint, *home)[0] == 0
    rc, _, err = bootree(capsys, "summary", f"--repo={pub}", "-u", f"--gpg-sign={gpg_key.fingerprint}", *home)
    assert rc == 0, err
    trusted = _keyring_dir(gpg_key, tmp_path)
    for c in (first, second):
        shown = ostree("show", f"--repo={pub}", f"--gpg-homedir={trusted}", c).stdout
        assert "Found 1 signature:" in shown and 'Good signature from "bootree test <test@bootree.invalid>"' in shown
    client = tmp_path / "client"
    ostree("init", f"--repo={client}", "--mode=archive")
    with StaticServer(pub) as srv:
        ostree("remote", "add", f"--repo={client}", "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
               "origin", srv.url)
        refused = ostree("pull", f"--repo={client}", "origin", "os/main", check=False)
        assert refused.returncode != 0  # ostree trusts no key yet either
        ostree("remote", "gpg-import", f"--repo={client}", "origin", "-k", gpg_key.public_keyring)
        ostree("pull", f"--repo={client}", "origin", "os/main")
    assert ostree("rev-parse", f"--repo={client}", "origin:os/main").stdout.strip() == second
    ostree("fsck", f"--repo={client}")
    # Signatures made by bootree on an ostree-made commit append to ostree's, and both verify.
    both = ostree("show", f"--repo={client}", f"--gpg-homedir={trusted}", second).stdout
    assert "Good signature" in both
