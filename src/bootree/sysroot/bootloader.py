"""Kernels and Boot Loader Specification entries of deployments.

Layer: sysroot. Three jobs, each as ostree 2022.7 does it (``ostree-format.md`` §9.2–9.3):

* :func:`find_kernel` locates the kernel of a deployment tree (``usr/lib/modules/<kver>/``
  first, then the legacy ``usr/lib/ostree-boot`` and ``boot`` layouts) and computes its
  *bootcsum*, the SHA-256 of kernel ‖ initramfs ‖ devicetree that names the kernel directory in
  ``/boot``;
* :func:`install_kernel` places those files in ``boot/ostree/<os>-<bootcsum>/``, shared by all
  deployments with the same bootcsum, hardlinked when possible (as ostree does, so a second
  deployment costs no kernel bytes), copied across filesystems;
* :func:`make_entry` builds the BLS entry (title from os-release, version, options with
  ``ostree=``, linux, initrd).

Only the BLS backend exists: ostree's "none"/auto mode on a sysroot without grub/syslinux/u-boot
configuration writes nothing else, and that is what a directory sysroot needs.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bootree import _fs
from bootree.errors import KernelNotFound, SysrootError
from bootree.format.bls import BlsEntry
from bootree.format.checksum import is_checksum
from bootree.sysroot import _faults, debug, layout
from bootree.sysroot.deployment import Deployment

__all__ = ["KernelLayout", "find_kernel", "install_kernel", "make_entry", "read_os_release"]

log = logging.getLogger(__name__)

_MODULES = PurePosixPath("usr/lib/modules")


@dataclass(frozen=True, slots=True)
class KernelLayout:
    """Where a deployment's boot files are and what they are called in ``/boot``.

    Each file is ``(source path relative to the deployment root, name in the kernel dir)``.
    """

    bootcsum: str
    kernel: tuple[str, str]
    initramfs: tuple[str, str] | None = None
    devicetree: tuple[str, str] | None = None
    dtb_dir: tuple[str, str] | None = None
    hmac: tuple[str, str] | None = None

    def files(self) -> list[tuple[str, str]]:
        """Every regular file to install, kernel first (the order of ``bootcsum``)."""
        return [f for f in (self.kernel, self.initramfs, self.devicetree, self.hmac) if f is not None]


def _is_reg(tree: _fs.Tree, rel: str) -> bool:
    """A regular file reached without any symlink (a symlinked kernel is not followed)."""
    try:
        st = tree.lstat(rel)
    except OSError:
        return False
    return st is not None and stat.S_ISREG(st.st_mode)


def _is_dir(tree: _fs.Tree, rel: str) -> bool:
    try:
        st = tree.lstat(rel)
    except OSError:
        return False
    return st is not None and stat.S_ISDIR(st.st_mode)


def _listdir(tree: _fs.Tree, rel: str) -> list[str] | None:
    """Names in directory ``rel``; ``None`` when missing, not a directory or behind a symlink."""
    try:
        return tree.listdir(rel)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            log.warning("ignoring /%s of the deployment tree: it is a symlink", rel)
            return None
        raise


def _hash_files(tree: _fs.Tree, rels: list[str]) -> str:
    """SHA-256 of the files' contents in order: ostree's boot checksum.

    Read into one reused buffer: a fresh 1 MiB ``bytes`` per read (a kernel and initramfs are
    30-40 MB) costs a page fault per 4 KiB on every deploy.
    """
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    for rel in rels:
        fd = tree.open(rel)
        try:
            while n := os.readv(fd, [buf]):
                h.update(view[:n])
        finally:
            os.close(fd)
    return h.hexdigest()


def _dtb_files(tree: _fs.Tree, rel: str) -> list[str]:
    """Regular files under ``rel`` (sorted); symlinks are not followed."""
    out: list[str] = []
    todo = [rel]
    while todo:
        cur = todo.pop()
        for name in _listdir(tree, cur) or []:
            full = f"{cur}/{name}"
            if _is_dir(tree, full):
                todo.append(full)
            elif _is_reg(tree, full):
                out.append(full)
    return sorted(out)


def _from_modules(tree: _fs.Tree, known_bootcsum: str | None) -> KernelLayout | None:
    no_dtb = debug.enabled("no-dtb")
    for kver in _listdir(tree, str(_MODULES)) or []:
        d = _MODULES / kver
        if not _is_reg(tree, str(d / "vmlinuz")):
            continue
        kernel = (str(d / "vmlinuz"), f"vmlinuz-{kver}")
        initramfs = None
        for name in ("initramfs.img", "initramfs"):
            if _is_reg(tree, str(d / name)):
                initramfs = (str(d / name), f"initramfs-{kver}.img")
                break
        devicetree = dtb = None
        if not no_dtb:  # ostree's test switch: as if the tree had no device trees
            if _is_reg(tree, str(d / "devicetree")):
                devicetree = (str(d / "devicetree"), f"devicetree-{kver}")
            elif _is_dir(tree, str(d / "dtb")):
                dtb = (str(d / "dtb"), "dtb")  # ostree installs the directory as "dtb"
        hmac = (str(d / ".vmlinuz.hmac"), f".vmlinuz-{kver}.hmac") if _is_reg(tree, str(d / ".vmlinuz.hmac")) else None
        if known_bootcsum is None:
            rels = [kernel[0]] + ([initramfs[0]] if initramfs else [])
            if devicetree:
                rels.append(devicetree[0])
            if dtb:
                rels.extend(_dtb_files(tree, dtb[0]))
            bootcsum = _hash_files(tree, rels)
        else:
            bootcsum = known_bootcsum
        return KernelLayout(bootcsum, kernel, initramfs, devicetree, dtb, hmac)
    return None


def _legacy_part(name: str, prefix: str) -> tuple[str, str] | None:
    """``(name in /boot, checksum)`` of a legacy file ``<prefix>...-<sha256>``, else ``None``."""
    if not name.startswith(prefix):
        return None
    stem, _, csum = name.rpartition("-")
    if not is_checksum(csum):
        return None
    return stem, csum


def _from_legacy(tree: _fs.Tree) -> KernelLayout | None:
    """ostree's legacy layout: the first of ``usr/lib/ostree-boot`` and ``boot`` that exists.

    The tree builder names each file ``<name>-<bootcsum>`` (``vmlinuz-3.6.0-<csum>`` or just
    ``vmlinuz-<csum>``); the kernel, initramfs and devicetree must agree on the checksum.

    Raises:
        KernelNotFound: the initramfs or devicetree names another checksum than the kernel.
    """
    for sub in ("usr/lib/ostree-boot", "boot"):
        names = _listdir(tree, sub)
        if names is None:
            continue
        found: dict[str, tuple[str, str, str]] = {}  # kind -> (source, name in /boot, checksum)
        for name in sorted(names):
            for kind in ("vmlinuz-", "initramfs-", "devicetree-"):
                part = _legacy_part(name, kind)
                if part is not None and kind not in found and _is_reg(tree, f"{sub}/{name}"):
                    found[kind] = (f"{sub}/{name}", part[0], part[1])
        kernel = found.get("vmlinuz-")
        if kernel is None:
            return None
        for kind, what in (("initramfs-", "initrd"), ("devicetree-", "device tree")):
            other = found.get(kind)
            if other is not None and other[2] != kernel[2]:
                raise KernelNotFound(f"/{sub} (mismatched kernel checksum vs {what} in tree)")
        initramfs, devicetree = found.get("initramfs-"), found.get("devicetree-")
        if debug.enabled("no-dtb"):
            devicetree = None
        return KernelLayout(
            kernel[2], kernel[:2],
            initramfs[:2] if initramfs else None,
            devicetree[:2] if devicetree else None,
        )
    return None


def find_kernel(root: Path, *, known_bootcsum: str | None = None) -> KernelLayout:
    """Find the kernel of the deployment tree at ``root``, choosing as ostree 2022.7 does.

    Both layouts are read: ``usr/lib/modules/<kver>/`` (entries in sorted order; ostree uses
    readdir order, the same for a tree with one kernel) and the legacy one. The modules layout
    wins, unless it lacks an initramfs that the legacy one has (rpm-ostree's trees).
    ``known_bootcsum`` skips hashing when the caller already knows the value (re-writing
    entries of old deployments). Paths resolve inside the tree without following symlinks: a
    ``usr/lib/modules`` or a ``vmlinuz`` that is a symlink is not used (it could name the
    host's kernel).

    Raises:
        KernelNotFound: when no layout matches.
    """
    with _fs.Tree(root) as tree:
        modules = _from_modules(tree, known_bootcsum)
        legacy = _from_legacy(tree)
    if legacy is not None and (modules is None or (modules.initramfs is None and legacy.initramfs is not None)):
        found: KernelLayout | None = legacy
    else:
        found = modules
    if found is None:
        raise KernelNotFound(os.fspath(root))
    return found


def _link_or_copy(tree: _fs.Tree, src: str, dst: Path) -> None:
    """Hardlink (else copy) the regular file ``src`` of ``tree`` to ``dst``, never via a symlink."""
    pfd, name = tree.parent(src)
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
            raise SysrootError(f"/{src} of the deployment is not a regular file")
        try:
            os.link(name, dst, src_dir_fd=pfd, follow_symlinks=False)
            return
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM):
                raise
        fd_in = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    finally:
        os.close(pfd)
    tmp = dst.parent / _fs.temp_name(f".{dst.name}.")
    try:
        fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd_in).st_size
            while size > 0:
                n = _fs.copy_file_range(fd_in, fd_out, size)
                if n == 0:
                    break
                size -= n
            _fs.fsync(fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    _fs.rename(tmp, dst)


def install_kernel(sysroot: Path, deploy_root: Path, stateroot: str, kl: KernelLayout) -> None:
    """Make sure ``boot/ostree/<os>-<bootcsum>/`` holds this layout's files.

    A new kernel directory is filled under a temporary name and renamed into place, so a crash
    never leaves a half-filled directory under the real name; files missing from an existing
    directory are added one by one (each is complete or absent).
    """
    final = sysroot / layout.kernel_dir(stateroot, kl.bootcsum)
    if final.is_dir():
        target, fresh = final, False
    else:
        (sysroot / "boot/ostree").mkdir(parents=True, exist_ok=True)
        target, fresh = final.parent / _fs.temp_name(f".tmp-{final.name}-"), True
        os.mkdir(target, 0o755)
    try:
        with _fs.Tree(deploy_root) as tree:
            for i, (src, name) in enumerate(kl.files()):
                if i == 1:
                    _faults.checkpoint("kernel-copy")
                if not os.path.lexists(target / name):
                    _link_or_copy(tree, src, target / name)
            if kl.dtb_dir is not None and not os.path.lexists(target / kl.dtb_dir[1]):
                tmpdtb = target / _fs.temp_name(".dtb-")
                os.mkdir(tmpdtb, 0o755)
                for rel in _dtb_files(tree, kl.dtb_dir[0]):
                    sub = Path(rel).relative_to(kl.dtb_dir[0])
                    (tmpdtb / sub).parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(tree, rel, tmpdtb / sub)
                _fs.rename(tmpdtb, target / kl.dtb_dir[1])
        if fresh:
            _fs.fsync_dir(target)
            _fs.rename(target, final)
    except BaseException:
        if fresh:
            _fs.rmtree(target)
        raise


def _read_in_root(root: Path, rel: str) -> str | None:
    """Read a small file of a deployment tree, following symlinks as if ``root`` were ``/``."""
    try:
        with _fs.Tree(root) as tree:
            return tree.read_bytes(rel, in_root=True, limit=1 << 20).decode("utf-8", errors="replace")
    except OSError:
        return None


def read_os_release(root: Path) -> dict[str, str]:
    """``usr/lib/os-release``, else ``etc/os-release``, of a deployment tree, shell-unquoted."""
    text = _read_in_root(root, "usr/lib/os-release")
    if text is None:
        text = _read_in_root(root, "etc/os-release")
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            continue
        out[key.strip()] = " ".join(words)
    return out


def make_entry(
    sysroot: Path,
    deployment: Deployment,
    *,
    index: int,
    count: int,
    bootversion: int,
    show_stateroot: bool,
    kl: KernelLayout,
) -> BlsEntry:
    """The BLS entry ostree would write for ``deployment`` at ``index`` of ``count``.

    Raises:
        SysrootError: if the deployment tree is missing.
    """
    root = sysroot / deployment.dir
    if not root.is_dir():
        raise SysrootError(f"deployment directory {deployment.dir} is missing")
    osr = read_os_release(root)
    title = osr.get("PRETTY_NAME") or osr.get("ID") or "OSTree"
    version = deployment.version
    if version and version not in title:
        title += f" {version}"
    title += " (ostree"
    if show_stateroot:
        title += f":{deployment.stateroot}"
    title += f":{index})"
    ostree_arg = layout.ostree_karg(bootversion, deployment.stateroot, deployment.bootcsum, deployment.bootserial)
    kargs = deployment.kargs
    if kl.initramfs is None:
        # Without an initramfs the kernel must run prepare-root itself; ostree adds init= first.
        kargs = kargs.replace(f"init={ostree_arg}/usr/lib/ostree/ostree-prepare-root")
    kargs = kargs.replace(f"ostree={ostree_arg}")
    kdir = layout.kernel_dir_boot_relative(deployment.stateroot, deployment.bootcsum)
    entry = BlsEntry().set("title", title).set("version", str(count - index))
    entry = entry.set("options", str(kargs))
    if kl.devicetree is not None:
        entry = entry.set("devicetree", f"{kdir}/{kl.devicetree[1]}")
    elif kl.dtb_dir is not None:
        entry = entry.set("fdtdir", f"{kdir}/{kl.dtb_dir[1]}")
    entry = entry.set("linux", f"{kdir}/{kl.kernel[1]}")
    if kl.initramfs is not None:
        entry = entry.set("initrd", f"{kdir}/{kl.initramfs[1]}")
    if deployment.overlay_initrds:
        entry = BlsEntry(entry.fields, deployment.overlay_initrds)
    return entry
