"""Sysroot behaviour the libostree test suite found different (issue 15), each compared with the real ostree.

Every scenario runs once with ``ostree`` and once with bootree, each in its own directory
sysroot, and compares what ostree's scripts look at: the boot loader files (syslinux, U-Boot,
GRUB), ``/boot`` layouts of legacy and device-tree kernels, whiteouts in deployments, origins
after ``set-origin`` and an end-of-life rebase, the status lines, and the staging directory a
failed transaction leaves (``OSTREE_REPO_TEST_ERROR=pre-commit``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "sysroot"))
from sampleos import make_tree  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(shutil.which("ostree") is None, reason="the ostree binary is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="ostree admin on a fake sysroot needs root"),
]

SUITE = Path("/usr/libexec/installed-tests/libostree")
BASE_ENV = dict(os.environ, OSTREE_SYSROOT_DEBUG="mutable-deployments")
for _var in ("OSTREE_REPO", "OSTREE_SYSROOT", "OSTREE_GRUB2_EXEC", "OSTREE_REPO_TEST_ERROR", "OSTREE_BOOTID"):
    BASE_ENV.pop(_var, None)

Tool = Callable[..., str]


def _runner(argv0: list[str], env: dict[str, str] | None = None) -> Tool:
    def run(*args: str, check: bool = True, extra_env: dict[str, str] | None = None) -> str:
        proc = subprocess.run([*argv0, *args], env={**BASE_ENV, **(env or {}), **(extra_env or {})},
                              capture_output=True, text=True, check=False)
        if check:
            assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout if check else f"{proc.returncode}\n{proc.stderr}"
    return run


TOOLS = {"ostree": ["ostree"], "bootree": [sys.executable, "-m", "bootree"]}


def _sysroot(tmp: Path, tool: str, loader: str | None) -> tuple[Path, Tool]:
    """A sysroot as libtest.sh's setup_os_repository makes it, with a stub boot loader file."""
    sr = tmp / tool / "sysroot"
    sr.mkdir(parents=True)
    run = _runner(TOOLS[tool])
    run("admin", "init-fs", str(sr))
    run("admin", "os-init", f"--sysroot={sr}", "os")
    if loader == "syslinux":
        (sr / "boot/loader.0").mkdir(parents=True)
        os.symlink("loader.0", sr / "boot/loader")
        (sr / "boot/loader/syslinux.cfg").write_text("PROMPT 1\nLABEL other\n\tKERNEL /vmlinuz-rescue\n")
        (sr / "boot/syslinux").mkdir()
        os.symlink("../loader/syslinux.cfg", sr / "boot/syslinux/syslinux.cfg")
    elif loader == "uboot":
        (sr / "boot/loader.0").mkdir(parents=True)
        os.symlink("loader.0", sr / "boot/loader")
        (sr / "boot/loader/uEnv.txt").touch()
        os.symlink("loader/uEnv.txt", sr / "boot/uEnv.txt")
    elif loader == "grub2":
        (sr / "boot/grub2").mkdir(parents=True)
        os.symlink("../loader/grub.cfg", sr / "boot/grub2/grub.cfg")
    return sr, run


def _commit(run: Tool, sr: Path, tree: Path, n: int, ref: str = "os/stable", *extra: str) -> str:
    return run(f"--repo={sr}/ostree/repo", "commit", "-b", ref, f"--tree=dir={tree}", f"--timestamp=@{1700000000 + n}",
               f"--subject=v{n}", "--owner-uid=0", "--owner-gid=0", "--no-xattrs",
               f"--add-metadata-string=version={n}", *extra).strip()


def _tree(tmp: Path, n: int, edit: Callable[[Path], None] | None = None) -> Path:
    t = make_tree(tmp / f"tree{n}", n, with_shell=False)
    if edit is not None:
        edit(t)
    return t


def _boot_files(sr: Path) -> dict[str, str]:
    """Every file under boot/ (through boot/loader: the current version), by path, with its text."""
    out = {}
    for p in sorted((sr / "boot").rglob("*")):
        rel = str(p.relative_to(sr))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_text(errors="replace")
    return out


@pytest.mark.parametrize("loader", ["syslinux", "uboot", "grub2"])
def test_boot_loader_configuration_as_ostree_writes_it(tmp_path: Path, loader: str) -> None:
    def uenv(t: Path) -> None:
        (t / "usr/lib/ostree-boot").mkdir(parents=True)
        (t / "usr/lib/ostree-boot/uEnv.txt").write_text("loadfdt=load mmc ${bootpart}\n")

    trees = [_tree(tmp_path, 1), _tree(tmp_path, 2, uenv if loader == "uboot" else None)]
    env = {"OSTREE_GRUB2_EXEC": str(SUITE / "ostree-grub-generator")} if loader == "grub2" else {}
    got = {}
    for tool in TOOLS:
        sr, run = _sysroot(tmp_path, tool, loader)
        run = _runner(TOOLS[tool], env)
        for n, tree in enumerate(trees, 1):
            _commit(run, sr, tree, n)
            run("admin", "deploy", f"--sysroot={sr}", "--os=os", "--karg=root=LABEL=MOO", "os/stable")
        got[tool] = (_boot_files(sr), run("admin", "status", f"--sysroot={sr}"))
    assert got["bootree"] == got["ostree"]
    name = {"syslinux": "boot/loader/syslinux.cfg", "uboot": "boot/loader/uEnv.txt", "grub2": "boot/loader/grub.cfg"}
    files = got["ostree"][0]
    assert any(k.startswith("boot/loader.") and k.endswith(name[loader].rpartition("/")[2]) for k in files)


def test_sysroot_bootloader_none_writes_only_bls(tmp_path: Path) -> None:
    got = {}
    for tool in TOOLS:
        sr, run = _sysroot(tmp_path, tool, "grub2")
        run(f"--repo={sr}/ostree/repo", "config", "set", "sysroot.bootloader", "none")
        _commit(run, sr, _tree(tmp_path / tool, 1), 1)
        out = run("admin", "deploy", f"--sysroot={sr}", "--os=os", "os/stable")
        got[tool] = (_boot_files(sr), out.splitlines()[-1])
    assert got["bootree"] == got["ostree"]


def _legacy(t: Path) -> None:
    """The legacy layout of test-no-initramfs.sh: ``usr/lib/ostree-boot/vmlinuz-<csum>``, a devicetree."""
    shutil.rmtree(t / "usr/lib/modules")
    d = t / "usr/lib/ostree-boot"
    d.mkdir(parents=True)
    csum = hashlib.sha256(b"kerneldtb").hexdigest()
    (d / f"vmlinuz-{csum}").write_text("kernel")
    (d / f"devicetree-{csum}").write_text("dtb")


def _dtb_dir(t: Path) -> None:
    d = t / "usr/lib/modules/5.10.0/dtb/overlays"
    d.mkdir(parents=True)
    (d.parent / "board.dtb").write_text("a device tree\n")
    (d / "o.dtbo").write_text("an overlay\n")


def _both_layouts(t: Path) -> None:
    """modules without an initramfs, legacy with one: the legacy layout wins (rpm-ostree's trees)."""
    (t / "usr/lib/modules/5.10.0/initramfs.img").unlink()
    d = t / "usr/lib/ostree-boot"
    d.mkdir(parents=True)
    csum = hashlib.sha256(b"k2i2").hexdigest()
    (d / f"vmlinuz-5.10.0-{csum}").write_text("k2")
    (d / f"initramfs-5.10.0.img-{csum}").write_text("i2")


@pytest.mark.parametrize(("edit", "debug"), [(_legacy, ""), (_dtb_dir, ""), (_dtb_dir, "no-dtb"), (_both_layouts, "")],
                         ids=["legacy-devicetree", "dtb-dir", "dtb-dir-no-dtb", "legacy-wins"])
def test_kernel_layouts_in_boot(tmp_path: Path, edit: Callable[[Path], None], debug: str) -> None:
    env = {"OSTREE_SYSROOT_DEBUG": f"mutable-deployments,{debug}"}
    got = {}
    for tool in TOOLS:
        sr, _ = _sysroot(tmp_path, tool, None)
        run = _runner(TOOLS[tool], env)
        _commit(run, sr, _tree(tmp_path / tool, 1, edit), 1)
        run("admin", "deploy", f"--sysroot={sr}", "--os=os", "--karg=rootwait", "os/stable")
        got[tool] = _boot_files(sr)
    assert got["bootree"] == got["ostree"]


def test_whiteout_markers_become_whiteouts_on_deploy(tmp_path: Path) -> None:
    def markers(t: Path) -> None:
        d = t / "usr/container/layers/abcd"
        d.mkdir(parents=True)
        for name, mode in (("whiteout", 0o400), ("whiteout2", 0o777)):
            (d / f".ostree-wh.{name}").touch()
            os.chmod(d / f".ostree-wh.{name}", mode)

    got = {}
    for tool in TOOLS:
        sr, run = _sysroot(tmp_path, tool, None)
        _commit(run, sr, _tree(tmp_path / tool, 1, markers), 1)
        run("admin", "deploy", f"--sysroot={sr}", "--os=os", "os/stable")
        layer = next((sr / "ostree/deploy/os/deploy").glob("*.0")) / "usr/container/layers/abcd"
        got[tool] = sorted((p.name, stat.S_IFMT(p.lstat().st_mode), stat.S_IMODE(p.lstat().st_mode), p.lstat().st_rdev)
                           for p in layer.iterdir())
    assert got["bootree"] == got["ostree"]
    assert ("whiteout", stat.S_IFCHR, 0o400, 0) in got["ostree"]


def test_set_origin_endoflife_rebase_and_source_title(tmp_path: Path) -> None:
    got = {}
    for tool in TOOLS:
        sr, run = _sysroot(tmp_path, tool, None)
        _commit(run, sr, _tree(tmp_path / tool, 1), 1, "os/stable", "--add-metadata-string=ostree.source-title=built here")
        run("admin", "deploy", f"--sysroot={sr}", "--os=os", "os/stable")
        status = run("admin", "status", f"--sysroot={sr}")
        run("admin", "set-origin", f"--sysroot={sr}", "--index=0", "bacon", "--set=gpg-verify=false", "http://tasty.com")
        dep = next((sr / "ostree/deploy/os/deploy").glob("*.0.origin"))
        set_origin = dep.read_text()
        remotes = run(f"--repo={sr}/ostree/repo", "remote", "list", "-u")
        dep.write_text("[origin]\nrefspec=os/stable\n")
        _commit(run, sr, _tree(tmp_path / tool, 2), 2, "os/new")
        empty = tmp_path / tool / "empty"
        empty.mkdir()
        _commit(run, sr, empty, 3, "os/stable", "--add-metadata-string=ostree.endoflife=Product discontinued",
                "--add-metadata-string=ostree.endoflife-rebase=os/new")
        run("admin", "upgrade", f"--sysroot={sr}", "--os=os")
        origins = sorted(p.read_text() for p in (sr / "ostree/deploy/os/deploy").glob("*.origin"))
        got[tool] = (status, set_origin, remotes, origins, run("admin", "status", f"--sysroot={sr}"))
    assert got["bootree"] == got["ostree"]
    assert "`- built here" in got["ostree"][0]


def test_pre_commit_test_hook_leaves_the_staging_directory(tmp_path: Path) -> None:
    got = {}
    for tool in TOOLS:
        run = _runner(TOOLS[tool])
        repo = tmp_path / tool / "repo"
        repo.parent.mkdir()
        run(f"--repo={repo}", "init", "--mode=archive")
        tree = _tree(tmp_path / tool, 1)
        failed = run(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}", check=False,
                     extra_env={"OSTREE_REPO_TEST_ERROR": "pre-commit", "OSTREE_BOOTID": "boot-one"})
        left = sorted(p.name.startswith("staging-boot-one-") for p in (repo / "tmp").iterdir())
        refs = run(f"--repo={repo}", "refs")
        run(f"--repo={repo}", "commit", "-b", "main", f"--tree=dir={tree}", extra_env={"OSTREE_BOOTID": "boot-two"})
        after = [p.name for p in (repo / "tmp").iterdir() if p.name.startswith("staging-")]
        got[tool] = (failed.split("\n")[0], "OSTREE_REPO_TEST_ERROR_PRE_COMMIT" in failed, left, refs, after)
    assert got["bootree"] == got["ostree"]
    assert got["ostree"][2].count(True) == 1  # exactly one staging-boot-one-* entry: no lock file left
