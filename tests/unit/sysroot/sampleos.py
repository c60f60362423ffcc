"""A tiny bootable sample OS tree for sysroot tests (and the demo), in ostree layout.

Not a test module: imported by the sysroot unit, integration and compat tests, and runnable as
``python sampleos.py OUTDIR VERSION``. The tree has ``usr/lib/modules/<kver>/{vmlinuz,
initramfs.img}``, ``usr/lib/os-release``, defaults in ``usr/etc``, mount points ``var``,
``sysroot``, ``proc``, ``dev``, ``run``, ``tmp``, and a real shell (the host's dash with its
libc and loader, ~2 MB) so that a booted deployment can run commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SHELL = "/usr/bin/dash"


def _host_libs(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                libs.append(p)
                break
    return libs


def _write(p: Path, text: str, mode: int = 0o644) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.chmod(p, mode)


def make_tree(root: Path, version: int, *, kernel: str = "5.10.0", with_shell: bool = True) -> Path:
    """Build version ``version`` of the sample OS at ``root`` (created); returns ``root``.

    Versions differ in os-release, ``usr/etc/foo.conf`` and ``usr/share/v``; the kernel is the
    same unless ``kernel`` differs, so the bootcsum is shared between versions.
    """
    root.mkdir(parents=True)
    for d in ("var", "sysroot", "proc", "dev", "run", "tmp", "usr/bin", "usr/lib", "usr/share"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/bin")):
        os.symlink(target, root / link)
    mod = root / "usr/lib/modules" / kernel
    _write(mod / "vmlinuz", f"fake-kernel {kernel}\n")
    _write(mod / "initramfs.img", f"fake-initramfs {kernel}\n")
    _write(root / "usr/lib/os-release",
           f'NAME=SampleOS\nID=sampleos\nVERSION_ID={version}\nPRETTY_NAME="SampleOS {version}"\n')
    etc = root / "usr/etc"
    etc.mkdir(parents=True)
    os.symlink("../usr/lib/os-release", etc / "os-release")
    _write(etc / "foo.conf", f"a={version}\n")
    _write(etc / "unchanged.conf", "keep\n")
    _write(etc / "hostname", "sample\n")
    _write(root / "usr/share/v", f"{version}\n")
    if with_shell:
        shutil.copy2(SHELL, root / "usr/bin/sh")
        for lib in _host_libs(SHELL):
            dest = root / lib.lstrip("/")
            if str(dest.relative_to(root)).startswith(("lib64/", "lib/")):
                dest = root / "usr" / dest.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib, dest)
    return root


if __name__ == "__main__":
    make_tree(Path(sys.argv[1]), int(sys.argv[2]))
