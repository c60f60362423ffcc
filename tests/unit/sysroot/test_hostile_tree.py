"""Deploying a tree whose links point outside it never reads the host (issue 10, defect 3).

Each commit carries a symlink that a path-based copy would follow onto the host: ``usr/etc``
itself (absolute, and relative with many ``../``), a directory or a file inside ``usr/etc``,
the kernel, ``usr/lib/modules``, ``/var`` content. A canary directory outside the sysroot
stands for the host's ``/etc/ssh``; after every deploy its bytes must appear nowhere in the
sysroot, the deploy either copied the link or refused with a one-line error, the old default
deployment is intact, and both ``bootree fsck`` and ``ostree fsck`` are clean.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sysrootenv import SysrootEnv

from bootree.errors import BootreeError, EtcMergeConflict, KernelNotFound, SysrootError
from bootree.sysroot import DeployOptions, Origin, deploy, ops
from bootree.sysroot.deployment import Deployment

ORIGIN = Origin.for_refspec("sampleos/stable")
CANARY = b"CANARY-host-private-key-0123456789\n"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """The "host" files a hostile link aims at: outside the sysroot, never to be read."""
    h = tmp_path / "host"
    (h / "etc/ssh").mkdir(parents=True)
    (h / "etc/ssh/ssh_host_ed25519_key").write_bytes(CANARY)
    (h / "etc/ssh/sshd_config").write_bytes(CANARY)
    (h / "lib/modules/9.9.9").mkdir(parents=True)
    (h / "lib/modules/9.9.9/vmlinuz").write_bytes(CANARY)
    return h


def _rel_to_host(target: Path) -> str:
    """A relative link that climbs far above the tree (``../`` × 40) and then into ``target``."""
    return "../" * 40 + str(target).lstrip("/")


def _no_canary(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink() and p.is_file():
                assert CANARY not in p.read_bytes(), f"host bytes copied into {p}"


def _fsck_both(env: SysrootEnv) -> None:
    assert env.sysroot.repo.fsck().ok
    if shutil.which("ostree") is not None:
        proc = subprocess.run(["ostree", "fsck", f"--repo={env.sysroot.repo.path}"], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _deploy(env: SysrootEnv, csum: str, **kw: object) -> Deployment:
    s = env.reopen()
    with s.lock():
        return deploy(s, csum, stateroot="sampleos", origin=ORIGIN, opts=DeployOptions(**kw)).deployment  # type: ignore[arg-type]


def _base(env: SysrootEnv) -> tuple[Deployment, dict[str, bytes]]:
    """v1 deployed, with a local /etc change (so the next deploy merges)."""
    d1 = _deploy(env, env.commit(1))
    etc = env.sysroot.deployment_dir(d1) / "etc"
    (etc / "local.conf").write_bytes(b"mine\n")
    return d1, {n: (etc / n).read_bytes() for n in sorted(os.listdir(etc)) if (etc / n).is_file()}


def _old_intact(env: SysrootEnv, d1: Deployment, etc_before: dict[str, bytes], *, still_default: bool) -> None:
    s = env.reopen()
    assert any(d.same(d1) for d in s.deployments)
    if still_default:
        assert s.deployments[0].same(d1)
    etc = s.deployment_dir(d1) / "etc"
    assert {n: (etc / n).read_bytes() for n in sorted(os.listdir(etc)) if (etc / n).is_file()} == etc_before


def _link_usr_etc(target: str) -> Callable[[Path], None]:
    def edit(tree: Path) -> None:
        shutil.rmtree(tree / "usr/etc")
        os.symlink(target, tree / "usr/etc")
    return edit


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_symlinked_usr_etc_is_copied_as_link_or_refused(env: SysrootEnv, host: Path, kind: str) -> None:
    target = str(host / "etc/ssh") if kind == "absolute" else _rel_to_host(host / "etc/ssh")
    d1, etc_before = _base(env)
    csum = env.commit(2, edit=_link_usr_etc(target))
    # With a merge deployment the local /etc would have to go through the link: refused.
    with pytest.raises(SysrootError, match="symlink") as ei:
        _deploy(env, csum)
    assert "\n" not in str(ei.value)
    _old_intact(env, d1, etc_before, still_default=True)
    _no_canary(env.path)
    # Without a merge, /etc is a copy of the link itself (never of what it points to).
    d2 = _deploy(env, csum, no_merge=True, retain=True)
    root = env.sysroot.deployment_dir(d2)
    assert os.readlink(root / "etc") == target
    _no_canary(env.path)
    _old_intact(env, d1, etc_before, still_default=False)
    # config-diff of a deployment whose /etc is a link: an error, not the host's /etc.
    with pytest.raises(SysrootError):
        ops.config_diff(env.reopen(), "sampleos")
    _fsck_both(env)


def test_legacy_etc_symlink_is_renamed_not_followed(env: SysrootEnv, host: Path) -> None:
    """A tree with ``/etc -> host`` and no ``usr/etc``: the link moves to ``usr/etc`` as a link."""
    def edit(tree: Path) -> None:
        shutil.rmtree(tree / "usr/etc")
        os.symlink(str(host / "etc/ssh"), tree / "etc")
    d2 = _deploy(env, env.commit(2, edit=edit))
    root = env.sysroot.deployment_dir(d2)
    assert os.readlink(root / "usr/etc") == str(host / "etc/ssh")
    assert os.readlink(root / "etc") == str(host / "etc/ssh")
    assert sorted(os.listdir(host / "etc/ssh")) == ["ssh_host_ed25519_key", "sshd_config"]
    _no_canary(env.path)
    _fsck_both(env)


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_symlinked_directory_and_file_inside_usr_etc(env: SysrootEnv, host: Path, kind: str) -> None:
    def t(p: Path) -> str:
        return str(p) if kind == "absolute" else _rel_to_host(p)

    def edit(tree: Path) -> None:
        os.symlink(t(host / "etc/ssh"), tree / "usr/etc/ssh")
        os.symlink(t(host / "etc/ssh/ssh_host_ed25519_key"), tree / "usr/etc/hostkey")
    d1, etc_before = _base(env)
    d2 = _deploy(env, env.commit(2, edit=edit))
    etc = env.sysroot.deployment_dir(d2) / "etc"
    assert os.readlink(etc / "ssh") == t(host / "etc/ssh")
    assert os.readlink(etc / "hostkey") == t(host / "etc/ssh/ssh_host_ed25519_key")
    assert (etc / "local.conf").read_bytes() == b"mine\n"  # the merge still ran
    _no_canary(env.path)
    _old_intact(env, d1, etc_before, still_default=False)
    # The links now live in a merge deployment: the next deploy's merge and config-diff
    # compare them as links and never descend through them.
    local = env.sysroot.deployment_dir(d2) / "etc"
    (local / "ssh2").symlink_to(t(host / "etc/ssh"))
    assert ops.config_diff(env.reopen(), "sampleos").added == ("local.conf", "ssh2")
    d3 = _deploy(env, env.commit(3, edit=edit))
    etc3 = env.sysroot.deployment_dir(d3) / "etc"
    assert os.readlink(etc3 / "ssh2") == t(host / "etc/ssh")
    _no_canary(env.path)
    _fsck_both(env)


def test_local_change_under_a_directory_the_new_tree_made_a_symlink(env: SysrootEnv, host: Path) -> None:
    """MOD has ``etc/ssh/sshd_config`` changed; NEW has ``usr/etc/ssh -> host``: refused, not written through."""
    def v1(tree: Path) -> None:
        (tree / "usr/etc/ssh").mkdir()
        (tree / "usr/etc/ssh/sshd_config").write_text("default\n")

    d1 = _deploy(env, env.commit(1, edit=v1))
    (env.sysroot.deployment_dir(d1) / "etc/ssh/sshd_config").write_text("local\n")

    def v2(tree: Path) -> None:
        os.symlink(str(host / "etc/ssh"), tree / "usr/etc/ssh")
    with pytest.raises(EtcMergeConflict):
        _deploy(env, env.commit(2, edit=v2))
    assert (host / "etc/ssh/sshd_config").read_bytes() == CANARY  # not overwritten through the link
    s = env.reopen()
    assert len(s.deployments) == 1 and s.deployments[0].same(d1)
    _fsck_both(env)


@pytest.mark.parametrize("what", ["vmlinuz-absolute", "vmlinuz-relative", "modules-dir"])
def test_symlinked_kernel_is_not_followed(env: SysrootEnv, host: Path, what: str) -> None:
    def edit(tree: Path) -> None:
        mod = tree / "usr/lib/modules"
        if what == "modules-dir":
            shutil.rmtree(mod)
            os.symlink(str(host / "lib/modules"), mod)
            return
        k = mod / "5.10.0/vmlinuz"
        k.unlink()
        target = host / "lib/modules/9.9.9/vmlinuz"
        os.symlink(str(target) if what == "vmlinuz-absolute" else _rel_to_host(target), k)
    d1, etc_before = _base(env)
    with pytest.raises(KernelNotFound) as ei:
        _deploy(env, env.commit(2, edit=edit))
    assert "\n" not in str(ei.value)
    _no_canary(env.path)
    _old_intact(env, d1, etc_before, still_default=True)
    _fsck_both(env)


def test_var_content_links_are_not_followed(env: SysrootEnv, host: Path) -> None:
    def edit(tree: Path) -> None:
        (tree / "var/lib").mkdir(parents=True)
        os.symlink(str(host / "etc/ssh/ssh_host_ed25519_key"), tree / "var/lib/key")
        os.symlink(_rel_to_host(host / "etc/ssh"), tree / "var/ssh")
    d1, etc_before = _base(env)
    d2 = _deploy(env, env.commit(2, edit=edit))
    root = env.sysroot.deployment_dir(d2)
    assert os.readlink(root / "var/lib/key") == str(host / "etc/ssh/ssh_host_ed25519_key")
    _no_canary(env.path)
    _old_intact(env, d1, etc_before, still_default=False)
    _fsck_both(env)


def test_cli_refusal_is_one_line(env: SysrootEnv, host: Path) -> None:
    _base(env)
    env.commit(2, edit=_link_usr_etc(str(host / "etc/ssh")))
    proc = subprocess.run(
        [sys.executable, "-m", "bootree", "admin", "deploy", f"--sysroot={env.path}", "--os=sampleos", "sampleos/v2"],
        capture_output=True, text=True, check=False, env=dict(os.environ, OSTREE_SYSROOT_DEBUG="mutable-deployments"),
    )
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "symlink" in lines[0], proc.stderr
    _no_canary(env.path)


def test_error_types_are_bootree_errors() -> None:
    assert issubclass(KernelNotFound, BootreeError) and issubclass(EtcMergeConflict, SysrootError)
