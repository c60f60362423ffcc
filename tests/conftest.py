"""Fixtures shared by every test tier.

Tools the tests drive (the real ``ostree``) are found on PATH; a test that needs one skips
with the reason when it is missing, except under CI (``CI`` set), where a missing tool is a
failure: CI must run every tier.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree.repo import Repo, RepoMode


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the longest tests first: ``@pytest.mark.heavy(SECONDS)``, the costliest at the front.

    ``make test`` runs two xdist workers (``--dist loadgroup``), which take tests in collection
    order: the multi-minute ones (qemu boots, libostree's suite) must start at once, on both
    workers, not be the tail of the run. The sort is stable (everything else keeps its order)
    and the same on every worker, as xdist requires.
    """
    def cost(item: pytest.Item) -> float:
        mark = item.get_closest_marker("heavy")
        return float(mark.args[0]) if mark else 0.0

    items.sort(key=lambda item: -cost(item))


def require_tool(name: str) -> str:
    """Path of a program the test needs; skip (or fail under CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but not installed")
        pytest.skip(f"{name} is not installed")
    return path


def require_root() -> None:
    """Skip unless running as root (real ownership, bare repositories, namespaces)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (real file ownership)")


@pytest.fixture
def ostree() -> str:
    """The real ostree binary."""
    return require_tool("ostree")


@pytest.fixture(params=[m for m in RepoMode], ids=lambda m: m.value)
def any_mode(request: pytest.FixtureRequest) -> RepoMode:
    """Each repository mode in turn (bare only as root)."""
    mode: RepoMode = request.param
    if mode is RepoMode.BARE and os.geteuid() != 0:
        pytest.skip("bare repositories need root")
    return mode


@pytest.fixture
def repo(tmp_path: Path, any_mode: RepoMode) -> Repo:
    """A fresh repository in each mode."""
    return Repo.init(tmp_path / "repo", mode=any_mode)


@pytest.fixture
def archive_repo(tmp_path: Path) -> Repo:
    """A fresh archive repository."""
    return Repo.init(tmp_path / "repo", mode=RepoMode.ARCHIVE)


class GpgKey:
    """A passphrase-less signing key in its own GnuPG home (short path: the agent's socket)."""

    def __init__(self, home: Path, fingerprint: str) -> None:
        self.home = home
        self.fingerprint = fingerprint
        #: The public key alone, as a binary keyring file (what a publisher ships to clients).
        self.public_keyring = home.parent / f"{fingerprint}.pub.gpg"


def make_gpg_key(uid: str) -> GpgKey:
    """Generate an ed25519 key with ``gpg --quick-gen-key`` in a new temporary home."""
    import subprocess
    import tempfile

    gpg = require_tool("gpg")
    base = Path(tempfile.mkdtemp(prefix="btg-"))
    home = base / "h"
    home.mkdir(mode=0o700)
    cmd = [gpg, "--homedir", str(home), "--batch", "--no-tty"]
    subprocess.run([*cmd, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
                   check=True, capture_output=True)
    out = subprocess.run([*cmd, "--with-colons", "--list-secret-keys"], check=True, capture_output=True, text=True)
    fpr = next(line.split(":")[9] for line in out.stdout.splitlines() if line.startswith("fpr:"))
    key = GpgKey(home, fpr)
    subprocess.run([*cmd, "--output", str(key.public_keyring), "--export", fpr], check=True, capture_output=True)
    return key


def drop_gpg_key(key: GpgKey) -> None:
    """Stop the key's agent and remove its home."""
    import subprocess

    subprocess.run(["gpgconf", "--homedir", str(key.home), "--kill", "all"], check=False, capture_output=True)
    shutil.rmtree(key.home.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def gpg_key() -> Iterator[GpgKey]:
    """A GPG signing key for the whole session (generation takes a moment)."""
    key = make_gpg_key("bootree test <test@bootree.invalid>")
    yield key
    drop_gpg_key(key)


@pytest.fixture(scope="session")
def other_gpg_key() -> Iterator[GpgKey]:
    """A second key, trusted by nobody."""
    key = make_gpg_key("mallory <mallory@bootree.invalid>")
    yield key
    drop_gpg_key(key)
