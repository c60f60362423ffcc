"""Deploy is crash-safe: kill it at several points, the sysroot boots the old or the new default.

Each case deploys v2 over a booted-looking v1 in a child process (``bootree admin deploy``)
and SIGKILLs it: at named crash points (``BOOTREE_TEST_CRASH_AT``: after the checkout, in the
middle of the kernel copy, just before and just after the ``boot/loader`` rename) and from
outside while the checkout is running. Then the bootloader is played on the sysroot as it was
left, and the next deploy must succeed. Nothing may be lost from ``/var`` or ``/etc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootree.format.gvariant import Variant
from bootree.repo import CommitOptions
from bootree.sysroot import DeployOptions, Origin, Sysroot, deploy, ops
from bootree.sysroot.bootsim import choose_entry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "sysroot"))
from sampleos import make_tree  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="a bare sysroot repo and deployments need root"),
]


def _commit(s: Sysroot, tree: Path, version: int) -> str:
    return s.repo.commit([tree], branch="sampleos/stable", subject=f"v{version}", timestamp=1700000000 + version,
                         metadata=[("version", Variant("s", str(version)))],
                         options=CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True))


def _setup(tmp_path: Path, many_files: int = 0) -> tuple[Path, str, str]:
    path = tmp_path / "sysroot"
    ops.init_fs(path)
    s = Sysroot.open(path)
    with s.lock():
        ops.os_init(s, "sampleos")
    c1 = _commit(s, make_tree(tmp_path / "t1", 1, with_shell=False), 1)
    with s.lock():
        d1 = deploy(s, c1, stateroot="sampleos", origin=Origin.for_refspec("sampleos/stable"),
                    opts=DeployOptions(kargs=("root=LABEL=root",))).deployment
    (s.deployment_dir(d1) / "etc/foo.conf").write_text("a=LOCAL\n")
    (path / "ostree/deploy/sampleos/var/precious").write_text("data\n")
    t2 = make_tree(tmp_path / "t2", 2, kernel="5.11.0", with_shell=False)
    for i in range(many_files):
        d = t2 / "usr/share/many" / f"{i % 50:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_text(f"{i}\n")
    c2 = _commit(s, t2, 2)
    return path, c1, c2


def _deploy_cmd(path: Path) -> list[str]:
    return [sys.executable, "-m", "bootree", "admin", "deploy", f"--sysroot={path}", "--os=sampleos", "sampleos/stable"]


def _env(crash_at: str | None) -> dict[str, str]:
    env = dict(os.environ, OSTREE_SYSROOT_DEBUG="mutable-deployments")
    env.pop("BOOTREE_TEST_CRASH_AT", None)
    if crash_at:
        env["BOOTREE_TEST_CRASH_AT"] = crash_at
    return env


def _check_boots(path: Path, expect: str, c1: str, c2: str) -> None:
    s = Sysroot.open(path)
    choice = choose_entry(s)
    want = c1 if expect == "old" else c2
    assert choice.deployment.csum == want, f"boots {choice.deployment.csum}, expected the {expect} default"
    root = s.deployment_dir(choice.deployment)
    assert (root / "usr/share/v").read_text() == ("1\n" if expect == "old" else "2\n")
    assert (root / "etc/foo.conf").read_text() == "a=LOCAL\n"  # /etc local change kept either way
    assert (path / "ostree/deploy/sampleos/var/precious").read_text() == "data\n"
    # Every listed deployment is complete, and the kernel of the default is in /boot.
    for d in s.deployments:
        assert (s.deployment_dir(d) / "usr/lib/os-release").is_file()
        assert (path / f"boot/ostree/sampleos-{d.bootcsum}").is_dir()
    linux = choice.entry.get("linux")
    assert linux is not None and (path / "boot" / linux.lstrip("/")).is_file()


def _recover_and_check(path: Path, c1: str, c2: str) -> None:
    """The next deploy (or a cleanup) after a crash works and leaves no leftovers."""
    s = Sysroot.open(path)
    if not any(d.csum == c2 for d in s.deployments):
        proc = subprocess.run(_deploy_cmd(path), env=_env(None), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    else:
        subprocess.run([sys.executable, "-m", "bootree", "admin", "cleanup", f"--sysroot={path}"],
                       env=_env(None), check=True, capture_output=True)
    _check_boots(path, "new", c1, c2)
    assert not (path / "ostree/deploy/sampleos/.bootree-staging").exists()
    assert not [n for n in os.listdir(path / "boot/ostree") if n.startswith(".")]
    assert sorted(os.listdir(path / "boot")) == ["boot", "loader", f"loader.{Sysroot.open(path).bootversion}", "ostree"]


@pytest.mark.parametrize(
    ("point", "expect"),
    [("after-checkout", "old"), ("kernel-copy", "old"), ("before-swap", "old"), ("after-swap", "new")],
)
def test_killed_at_crash_point(tmp_path: Path, point: str, expect: str) -> None:
    path, c1, c2 = _setup(tmp_path)
    proc = subprocess.run(_deploy_cmd(path), env=_env(point), capture_output=True, text=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    _check_boots(path, expect, c1, c2)
    _recover_and_check(path, c1, c2)


def test_killed_during_checkout(tmp_path: Path) -> None:
    path, c1, c2 = _setup(tmp_path, many_files=4000)
    staging = path / "ostree/deploy/sampleos/.bootree-staging"
    proc = subprocess.Popen(_deploy_cmd(path), env=_env(None), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    killed_in_checkout = False
    while time.monotonic() < deadline and proc.poll() is None:
        work = [p for p in staging.iterdir() if p.is_dir()] if staging.is_dir() else []
        if work and (work[0] / "usr").is_dir():
            proc.send_signal(signal.SIGKILL)
            killed_in_checkout = True
            break
        time.sleep(0.001)
    proc.wait()
    if not killed_in_checkout:
        pytest.skip("the checkout finished before it could be interrupted")
    assert proc.returncode == -signal.SIGKILL
    _check_boots(path, "old", c1, c2)
    _recover_and_check(path, c1, c2)
