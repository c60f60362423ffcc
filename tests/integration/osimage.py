"""A small real OS image for the boot-chain tests and the demo: Debian kernel, busybox, Python, bootree.

Why this userland: the health runner and ``status`` inside the VM must be bootree's own code, so
the image needs Python. The corpus of ``make-corpus.sh`` has it but weighs 365 MB; instead the
Debian packages of the interpreter and the few shared libraries its extension modules load
(``python3.11-minimal``, ``libpython3.11-minimal``, ``libpython3.11-stdlib``, ``libc6``, ``libgcc-s1``, ``libssl3``,
``libffi8``, ...) are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into a
merged-/usr tree, then trimmed (tests, idle, tkinter, docs, locales): about 45 MB. bootree is
copied from this checkout, and its dependencies (click, rich, httpx, cryptography, zlib-ng and
theirs) from the running interpreter's site-packages, file by file from their RECORDs; the
compiled ones match because both interpreters are CPython 3.11 on x86-64 glibc. A static
busybox gives the shell and the mount/reboot tools. The kernel is Debian's cloud kernel (EFI
stub; virtio, vfat and efivarfs as modules, which the initramfs loads).

Downloads are cached in ``$BOOTREE_TEST_CACHE`` (default ``~/.cache/bootree-test``). Run as a
script to build a tree for the demo: ``python tests/integration/osimage.py DEST VERSION ok|fail``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "src"))

from bootree.install.initramfs import build_initramfs  # noqa: E402

KERNEL_PKGS = ("linux-image-6.12-cloud-amd64", "linux-image-cloud-amd64")
PY_PKGS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "zlib1g", "libexpat1",
           "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libuuid1", "libcrypt1",
           "libgcc-s1")  # libc6 depends on it: pthread_exit and cryptography load it
#: Modules copied from the kernel package (the initramfs picks its own subset from them).
KMODS = ("drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
         "drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "drivers/block/virtio_blk",
         "fs/fat/fat", "fs/fat/vfat", "fs/nls/nls_cp437", "fs/nls/nls_ascii", "fs/nls/nls_utf8",
         "fs/nls/nls_iso8859-1", "fs/efivarfs/efivarfs",
         "lib/libcrc32c", "fs/erofs/erofs", "fs/overlayfs/overlay", "drivers/block/loop")  # composefs
TRIM = ("usr/lib/python3.11/test", "usr/lib/python3.11/idlelib", "usr/lib/python3.11/tkinter",
        "usr/lib/python3.11/lib2to3", "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/pydoc_data",
        "usr/lib/python3.11/turtledemo", "usr/lib/python3.11/unittest", "usr/lib/python3.11/distutils",
        "usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/lintian", "usr/share/i18n",
        "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/x86_64-linux-gnu/engines-3", "usr/lib/x86_64-linux-gnu/ossl-modules")
SKIP_DISTS = {"pip", "setuptools", "wheel"}

#: PID 1 of the test OS: mount the API file systems and the ESP, run bootree's health assessment,
#: then the command file the host left on the ESP, and power off (or reboot when asked).
OS_INIT = r"""#!/bin/sh
export PATH=/usr/bin:/usr/sbin
mount -t tmpfs -o mode=0755 tmpfs /run; mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
ESPDEV=$(findfs LABEL=ESP)
mount -t vfat "$ESPDEV" /boot/efi || echo "BOOTREE-TEST: cannot mount the ESP ($ESPDEV)"
VER=$(sed -n 's/^VERSION_ID=//p' /usr/lib/os-release)
echo "BOOTREE-TEST: booted uptime=$(cut -d' ' -f1 /proc/uptime) version=$VER $(tr ' ' '\n' < /proc/cmdline | grep '^ostree=')"
rc=0
if [ -f /boot/efi/bootree-test/report-only ]; then
  echo "BOOTREE-TEST: report-only"
else
  bootree health run; rc=$?
  echo "BOOTREE-TEST: health rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
  if [ -s /boot/efi/bootree-test/cmd ]; then
    echo "BOOTREE-TEST: cmd begin"; sh /boot/efi/bootree-test/cmd 2>&1; echo "BOOTREE-TEST: cmd end rc=$?"
  fi
fi
# the shutdown half of a staged update (bootc switch/upgrade), as ostree-finalize-staged.service does
if [ -f /run/ostree/staged-deployment ]; then
  bootree admin finalize-staged 2>&1; echo "BOOTREE-TEST: finalize-staged rc=$?"
fi
sync; umount /boot/efi; sync
echo "BOOTREE-TEST: done"
if [ "$rc" = 3 ]; then reboot -f; fi
poweroff -f
"""


def cache_dir() -> Path:
    """Where downloads are kept between runs."""
    return Path(os.environ.get("BOOTREE_TEST_CACHE") or Path.home() / ".cache/bootree-test")


def missing_tools() -> list[str]:
    """Host programs the boot-chain test needs."""
    names = ("qemu-system-x86_64", "busybox", "sgdisk", "mkfs.vfat", "mcopy", "mkfs.ext4", "apt-get", "dpkg")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    out = [n for n in names if shutil.which(n, path=path) is None]
    for f in ("/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "/usr/share/OVMF/OVMF_CODE_4M.fd",
              "/usr/share/OVMF/OVMF_VARS_4M.fd"):
        if not Path(f).is_file():
            out.append(f)
    return out


def _download(pkgs: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *pkgs], cwd=dest, check=True, capture_output=True)


def fetch_debs() -> dict[str, Path]:
    """The ``.deb`` files (downloaded once into the cache): package name → path.

    Two test workers (or two runs) may fill the cache at once: ``apt-get download`` writes into
    it in place, so the whole look-up runs under the cache's lock.
    """
    d = cache_dir() / "debs"
    d.mkdir(parents=True, exist_ok=True)
    with _cache_lock(d / ".lock"):
        return _fetch_debs(d)


@contextlib.contextmanager
def _cache_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fetch_debs(d: Path) -> dict[str, Path]:
    def have(pkg: str) -> Path | None:
        found = sorted(d.glob(f"{pkg}_*.deb"))
        return found[-1] if found else None

    out: dict[str, Path] = {}
    kernel = next((p for p in sorted(d.glob("linux-image-*.deb"))), None)
    if kernel is None:
        for meta in KERNEL_PKGS:
            deps = subprocess.run(["apt-cache", "depends", meta], capture_output=True, text=True).stdout
            m = re.search(r"Depends: (linux-image-\S+)", deps)
            try:
                _download([m.group(1) if m else meta], d)
                break
            except subprocess.CalledProcessError:
                continue
        kernel = next((p for p in sorted(d.glob("linux-image-*.deb"))), None)
        if kernel is None:
            raise RuntimeError("could not download a Debian cloud kernel with apt-get download")
    out["kernel"] = kernel
    missing = [p for p in PY_PKGS if have(p) is None]
    if missing:
        _download(missing, d)
    for p in PY_PKGS:
        found = have(p)
        if found is None:
            raise RuntimeError(f"could not download {p}")
        out[p] = found
    return out


def _merge_usr(src: Path, dest: Path) -> None:
    """Move an unpacked package into ``dest`` with merged /usr (bin, sbin, lib, lib64 under usr)."""
    for top in sorted(os.listdir(src)):
        target = dest / "usr" / top if top in ("bin", "sbin", "lib", "lib64") else dest / top
        s = src / top
        if s.is_dir() and not s.is_symlink():
            shutil.copytree(s, target, symlinks=True, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, target, follow_symlinks=False)


def _dist_closure(name: str) -> list[md.Distribution]:
    seen: dict[str, md.Distribution] = {}
    todo = [name]
    while todo:
        n = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if n in seen or n in SKIP_DISTS:
            continue
        try:
            dist = md.distribution(n)
        except md.PackageNotFoundError:
            continue
        seen[n] = dist
        for req in dist.requires or []:
            if "extra ==" not in req:
                todo.append(req)
    return list(seen.values())


def install_bootree(tree: Path) -> None:
    """bootree (this checkout) and its runtime dependencies into ``usr/lib/python3/dist-packages``."""
    site = tree / "usr/lib/python3/dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO_ROOT / "src/bootree", site / "bootree", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dist in _dist_closure("bootree"):
        if (dist.metadata["Name"] or "").lower() == "bootree":
            continue
        for f in dist.files or []:
            p = Path(str(dist.locate_file(f)))
            if "__pycache__" in f.parts or not p.is_file() or ".." in f.parts or str(f).endswith(".pth"):
                continue
            dst = site / str(f)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
    bin_ = tree / "usr/bin/bootree"
    bin_.write_text("#!/usr/bin/python3.11\nimport sys\nfrom bootree.cli import main\nsys.exit(main())\n")
    bin_.chmod(0o755)


def build_base(dest: Path) -> Path:
    """The version-independent tree (kernel, userland, bootree) in ``dest``; returns it."""
    debs = fetch_debs()
    tmp = dest.parent / f"{dest.name}.unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    tmp.mkdir(parents=True)
    for pkg, deb in debs.items():
        if pkg == "kernel":
            continue
        subprocess.run(["dpkg", "-x", deb, tmp / pkg], check=True)
        _merge_usr(tmp / pkg, dest)
    # kernel: vmlinuz and the few modules the initramfs loads
    subprocess.run(["dpkg", "-x", debs["kernel"], tmp / "kernel"], check=True)
    kver = sorted(os.listdir(tmp / "kernel/lib/modules"))[0]
    kmod = tmp / "kernel/lib/modules" / kver / "kernel"
    moddir = dest / "usr/lib/modules" / kver
    for m in KMODS:
        for suffix in (".ko", ".ko.xz", ".ko.zst"):
            if (kmod / f"{m}{suffix}").is_file():
                (moddir / "kernel" / m).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(kmod / f"{m}{suffix}", moddir / "kernel" / f"{m}{suffix}")
    shutil.copy2(tmp / f"kernel/boot/vmlinuz-{kver}", moddir / "vmlinuz")
    shutil.rmtree(tmp)
    for rel in TRIM:
        shutil.rmtree(dest / rel, ignore_errors=True)
    # busybox for the shell and tools
    bb = shutil.which("busybox")
    assert bb is not None
    shutil.copy2(bb, dest / "usr/bin/busybox")
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = dest / "usr/bin" / a
        if not link.exists() and not link.is_symlink() and a != "busybox":
            link.symlink_to("busybox")
    if not (dest / "usr/bin/python3").exists():
        (dest / "usr/bin/python3").symlink_to("python3.11")
    install_bootree(dest)
    # ostree layout: merged /usr, API mount points, /sysroot and the /ostree link into it
    for name, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"),
                         ("ostree", "sysroot/ostree")):
        if not (dest / name).is_symlink():
            (dest / name).symlink_to(target)
    for d in ("proc", "sys", "dev", "run", "tmp", "var", "sysroot", "boot", "root", "home", "mnt"):
        (dest / d).mkdir(exist_ok=True)
    (dest / "usr/sbin").mkdir(parents=True, exist_ok=True)
    init = dest / "usr/sbin/init"
    if init.is_symlink() or init.exists():
        init.unlink()
    init.write_text(OS_INIT)
    init.chmod(0o755)
    (dest / "etc").mkdir(exist_ok=True)
    (dest / "etc/hostname").write_text("bootree-test\n")
    (dest / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc/group").write_text("root:x:0:\n")
    # Compile the Python sources once, so boots under emulation do not pay for it. unchecked-hash:
    # a commit resets every mtime to 0, so mtime-checked .pyc files would never match again.
    chroot = shutil.which("chroot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "/usr/sbin/chroot"
    subprocess.run([chroot, dest, "/usr/bin/python3.11", "-m", "compileall", "-q", "-j0", "-f",
                    "--invalidation-mode", "unchecked-hash",
                    "/usr/lib/python3/dist-packages", "/usr/lib/python3.11"], check=False, capture_output=True,
                   env={"PATH": "/usr/bin", "LC_ALL": "C.UTF-8"})
    return dest


def make_version(base: Path, dest: Path, version: int, *, healthy: bool) -> Path:
    """A copy of ``base`` as OS version ``version`` whose required health check passes or fails."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(base, dest, symlinks=True)
    return apply_version(dest, version, healthy=healthy)


def apply_version(dest: Path, version: int, *, healthy: bool) -> Path:
    """Turn a copy of the base tree in ``dest`` into OS version ``version`` (in place).

    What changes between versions: os-release, the required health check, and the initramfs
    (rebuilt: the same bytes for the same kernel, modules and busybox).
    """
    (dest / "usr/lib/os-release").write_text(
        f'NAME="Bootree Test OS"\nID=bootree-test\nVERSION_ID={version}\nPRETTY_NAME="Bootree Test OS {version}"\n')
    (dest / "etc/os-release").unlink(missing_ok=True)
    (dest / "etc/os-release").symlink_to("../usr/lib/os-release")
    checks = dest / "usr/lib/bootree/health.d/required.d"
    checks.mkdir(parents=True, exist_ok=True)
    check = checks / "50-service-answers"
    check.write_text("#!/bin/sh\n# a stand-in for a real service check\n"
                     + ("echo service ok\nexit 0\n" if healthy else "echo 'service does not answer' >&2\nexit 1\n"))
    check.chmod(0o755)
    wanted = dest / "usr/lib/bootree/health.d/wanted.d"
    wanted.mkdir(parents=True, exist_ok=True)
    (wanted / "90-disk-space").write_text("#!/bin/sh\ndf / >/dev/null\n")
    (wanted / "90-disk-space").chmod(0o755)
    build_initramfs(dest)
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: osimage.py DEST VERSION ok|fail")
    out = Path(sys.argv[1])
    base = out.parent / ".osimage-base"
    if not (base / "usr/bin/bootree").exists():
        build_base(base)
    make_version(base, out, int(sys.argv[2]), healthy=sys.argv[3] == "ok")
    print(out)
