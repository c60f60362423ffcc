"""bootree and the real ``ostree admin`` (2022.7) read and write each other's sysroots.

* The same inputs deployed by ostree in one sysroot and by bootree in another give the same
  layout, the same BLS entries byte for byte, the same refs and origins (with and without an
  initramfs, with kargs, with the /etc merge).
* ``ostree admin status`` lists bootree's deployments as bootree does, and the other way round;
  each tool can keep deploying/undeploying on a sysroot the other made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "sysroot"))
from sampleos import make_tree  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(shutil.which("ostree") is None, reason="the ostree binary is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="ostree admin on a fake sysroot needs root"),
]

ENV = dict(os.environ, OSTREE_SYSROOT_DEBUG="mutable-deployments")


def run(*argv: str) -> str:
    proc = subprocess.run(list(argv), env=ENV, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def ostree(*args: str) -> str:
    return run("ostree", *args)


def bootree(*args: str) -> str:
    return run(sys.executable, "-m", "bootree", *args)


def _commit(sr: Path, tree: Path, version: int) -> str:
    return ostree(f"--repo={sr}/ostree/repo", "commit", "-b", "os/stable", f"--tree=dir={tree}",
                  f"--timestamp=@{1700000000 + version}", f"--subject=v{version}", "--owner-uid=0",
                  "--owner-gid=0", "--no-xattrs", f"--add-metadata-string=version={version}").strip()


def _layout(sr: Path) -> list[str]:
    out = []
    for base in ("boot", "ostree"):
        for dirpath, dirnames, filenames in os.walk(sr / base):
            rel = Path(dirpath).relative_to(sr)
            if str(rel).startswith("ostree/repo") or (str(rel).count("/") > 4 and "deploy/" in str(rel)):
                dirnames[:] = []
                continue
            for name in sorted(dirnames + filenames):
                p = Path(dirpath) / name
                if str(p.relative_to(sr)).startswith("ostree/repo"):
                    continue
                link = os.readlink(p) if p.is_symlink() else ""
                out.append(f"{p.relative_to(sr)} {link}")
            if "/deploy/" in f"/{rel}/" and str(rel).endswith("/deploy"):
                dirnames[:] = []
    return sorted(out)


def _files(sr: Path, sub: str) -> dict[str, str]:
    base = sr / sub
    return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*")) if p.is_file()}


def _build(tmp_path: Path, tool: str, trees: list[Path]) -> Path:
    sr = tmp_path / tool
    admin = ostree if tool == "ostree" else bootree
    sr.mkdir()  # ostree's init-fs wants the directory to exist
    admin("admin", "init-fs", str(sr))
    admin("admin", "os-init", f"--sysroot={sr}", "os")
    for i, tree in enumerate(trees, 1):
        _commit(sr, tree, i)
        extra = ["--karg=root=LABEL=root", "--karg=quiet"] if i == 1 else []
        admin("admin", "deploy", f"--sysroot={sr}", "--os=os", *extra, "os/stable")
        if i == 1:
            d1 = next((sr / "ostree/deploy/os/deploy").glob("*.0"))
            (d1 / "etc/foo.conf").write_text("a=LOCAL\n")
            (d1 / "etc/hostname").unlink()
            (d1 / "etc/new.conf").write_text("mine\n")
    return sr


@pytest.mark.parametrize("initramfs", [True, False], ids=["initramfs", "no-initramfs"])
def test_same_inputs_same_sysroot(tmp_path: Path, initramfs: bool) -> None:
    trees = []
    for v in (1, 2):
        t = make_tree(tmp_path / f"t{v}", v, with_shell=False)
        if not initramfs:
            (t / "usr/lib/modules/5.10.0/initramfs.img").unlink()
        trees.append(t)
    a = _build(tmp_path, "ostree", trees)
    b = _build(tmp_path, "bootree", trees)
    assert _layout(a) == _layout(b)
    assert _files(a, "boot/loader/entries") == _files(b, "boot/loader/entries")
    assert _files(a, "ostree/repo/refs/heads") == _files(b, "ostree/repo/refs/heads")
    origins = {p.name: p.read_text() for p in (a / "ostree/deploy/os/deploy").glob("*.origin")}
    assert origins == {p.name: p.read_text() for p in (b / "ostree/deploy/os/deploy").glob("*.origin")}
    d2 = sorted((a / "ostree/deploy/os/deploy").glob("*.0"))
    for d in d2:
        assert _files(a, f"ostree/deploy/os/deploy/{d.name}/etc") == _files(b, f"ostree/deploy/os/deploy/{d.name}/etc")
    # Each tool reads the other's sysroot the same way.
    for sr in (a, b):
        assert bootree("admin", "status", f"--sysroot={sr}") == ostree("admin", "status", f"--sysroot={sr}")
    assert bootree("admin", "config-diff", f"--sysroot={a}", "--os=os").splitlines() == sorted(
        ostree("admin", "config-diff", f"--sysroot={a}", "--os=os").splitlines(), key=lambda s: ("MDA".index(s[0]), s)
    )


def test_tools_take_turns_on_one_sysroot(tmp_path: Path) -> None:
    sr = tmp_path / "sr"
    sr.mkdir()
    ostree("admin", "init-fs", str(sr))
    ostree("admin", "os-init", f"--sysroot={sr}", "os")
    for v, tool in ((1, ostree), (2, bootree), (3, ostree), (4, bootree)):
        _commit(sr, make_tree(tmp_path / f"t{v}", v, with_shell=False, kernel=f"5.{v}.0"), v)
        tool("admin", "deploy", f"--sysroot={sr}", "--os=os", "--karg-append=v{v}", "os/stable")
        assert bootree("admin", "status", f"--sysroot={sr}") == ostree("admin", "status", f"--sysroot={sr}")
    bootree("admin", "pin", f"--sysroot={sr}", "1")
    assert "Pinned: yes" in ostree("admin", "status", f"--sysroot={sr}")
    ostree("admin", "deploy", f"--sysroot={sr}", "--os=os", "os/stable")
    assert len(ostree("admin", "status", f"--sysroot={sr}").split("origin refspec")) == 4
    bootree("admin", "undeploy", f"--sysroot={sr}", "2")
    ostree("admin", "undeploy", f"--sysroot={sr}", "1")
    status = ostree("admin", "status", f"--sysroot={sr}")
    assert bootree("admin", "status", f"--sysroot={sr}") == status
    assert status.count("origin refspec") == 1
    ostree("admin", "cleanup", f"--sysroot={sr}")
    bootree("admin", "cleanup", f"--sysroot={sr}")
    assert len(os.listdir(sr / "boot/ostree")) == 1
