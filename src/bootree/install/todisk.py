"""``install to-disk``: a bootable GPT disk image from a commit or a container image.

Layer: install (above sysroot). bootc's verb, for the file images that VMs and tests need: no
loop devices, no mounts. The sysroot is assembled in a directory next to the disk
(``init-fs``, the content written into its repository by a :class:`ContentSource`, ``os-init``,
one ``deploy``), with the ESP mirror configured so the same code path that updates a running
system writes the first ESP: systemd-boot as the removable-media loader (``EFI/BOOT/BOOTX64.EFI``), ``loader.conf``
without a ``default``, the kernel and initramfs, and the first entry with its boot counter.
Then ``mkfs.vfat``/mtools, ``mkfs.ext4 -d`` and ``sgdisk`` turn the two directories into
partitions of one disk (:mod:`bootree.install.disk`).

The root file system gets the label ``bootree-root`` and the entries say ``root=LABEL=bootree-root``,
which the initramfs (:mod:`bootree.install.initramfs`) resolves. The sysroot's repo config
records ``[bootree] esp=boot/efi``: the booted system mounts the ESP there, and every later
deploy, rollback or cleanup inside it keeps the ESP in step.

What is installed comes through :class:`ContentSource`, because this layer never touches the
network: :class:`RepoSource` copies commits of a local repository; a container image is pulled
by the host layer's source (``bootree.host.provision``), which the CLI passes in.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bootree import _fs
from bootree.errors import InstallError
from bootree.format.checksum import Checksum
from bootree.format.objects import ObjectType
from bootree.format.verified import VerifiedMetadata
from bootree.install import disk as disk_mod
from bootree.repo import Repo
from bootree.sysroot import Deployment, DeployOptions, Origin, Sysroot, deploy, esp, immutable, ops

__all__ = ["DEFAULT_SYSTEMD_BOOT", "ContentSource", "InstallOptions", "InstallResult", "RepoSource", "copy_commits",
           "install_from", "install_to_disk", "parse_size", "prepare_sysroot", "prepare_sysroot_from"]

log = logging.getLogger(__name__)

DEFAULT_SYSTEMD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
ESP_MOUNT = "boot/efi"


@dataclass(frozen=True, slots=True)
class InstallOptions:
    """Options of ``install to-disk`` (keyword-only everywhere)."""

    stateroot: str = "default"
    """bootc's stateroot name."""
    size_mib: int | None = None
    """Whole disk size; default: what the sysroot needs plus headroom."""
    esp_size_mib: int = 128
    kargs: tuple[str, ...] = ()
    """Extra kernel arguments (``console=ttyS0`` for a serial console, say)."""
    tries: int = esp.DEFAULT_TRIES
    """Boot counting tries of new entries (0 turns counting off)."""
    systemd_boot: Path = DEFAULT_SYSTEMD_BOOT
    extra_refs: tuple[str, ...] = ()
    """More refs of the source repo to copy into the sysroot's repo (updates for offline tests)."""
    fs_verity: bool = False
    """Make the root file system with fs-verity (ext4 ``-O verity``, 4 KiB blocks: fs-verity on
    ext4 wants the block size to be the page size) and set the sysroot repository's
    ``[ex-fsverity] required=true``. Objects copied in here cannot get fs-verity (this machine
    writes a directory, not the target file system); the booted system's deploys turn it on
    for the objects each composefs deployment needs."""


@dataclass(frozen=True, slots=True)
class InstallResult:
    """The finished disk."""

    disk: Path
    layout: disk_mod.DiskLayout
    deployment: Deployment
    esp_entries: tuple[str, ...]


_SIZE = re.compile(r"(?i)([0-9]+)\s*([KMGT]?)(?:i?B)?")


def parse_size(text: str) -> int:
    """``"2G"``, ``"1536M"``, ``"4096"`` (MiB) → MiB.

    Raises:
        InstallError: for anything else.
    """
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise InstallError(f"invalid size {text!r} (use e.g. 2G or 1536M)")
    n, unit = int(m.group(1)), m.group(2).upper()
    factor = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
    return max(1, int(n * factor))


def copy_commits(src: Repo, dst: Repo, refs: dict[str, Checksum]) -> int:
    """Copy every object reachable from ``refs`` (no parents), the commits' detached metadata, and
    set the refs; returns the count of objects.

    Objects are re-verified on the way in (``expected=``), so a damaged source fails loudly.
    """
    n = 0
    with dst.transaction() as txn:
        for otype, csum in sorted(src.reachable_objects(list(refs.values()), depth=0)):
            if txn.has_object(otype, csum):
                continue
            if otype is ObjectType.FILE:
                header, data = src.load_file(csum)
                txn.write_file(header, data, expected=csum)
            elif otype is ObjectType.COMMIT_META:
                continue
            else:
                txn.write_metadata(VerifiedMetadata.parse(otype, src.load_metadata(otype, csum), expected=csum))
            n += 1
        for csum in set(refs.values()):  # detached metadata: the signatures a 'signed' boot checks
            meta = src.read_commitmeta(csum)
            if meta is not None:
                txn.write_commitmeta(csum, meta)
        for ref, csum in refs.items():
            txn.set_ref(ref, csum)
    return n


def _tree_size(root: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        total += 4096 * len(files)
    return total


class ContentSource(Protocol):
    """Where the first deployment comes from: it fills the new sysroot's repository.

    The seam between ``install to-disk`` and what it installs, so that this layer stays
    offline: :class:`RepoSource` copies commits of a local repository; the host layer's image
    source (:class:`bootree.host.provision.ImageInstallSource`) pulls a container image through the
    OCI importer. The CLI joins them.
    """

    def check(self) -> None:
        """Fail early, before any file is written (a ref that does not resolve, say)."""
        ...

    def fill(self, sysroot: Sysroot) -> tuple[Checksum, Origin]:
        """Write the commit (and whatever else should ship) into ``sysroot.repo``; the commit and its origin."""
        ...

    def deployed(self, sysroot: Sysroot, deployment: Deployment) -> None:
        """After the first deployment is written (the sysroot is locked)."""
        ...


@dataclass(frozen=True, slots=True)
class RepoSource:
    """``rev`` of a local repository, copied with ``extra_refs`` into the new sysroot's repository."""

    repo: Repo
    rev: str
    extra_refs: tuple[str, ...] = ()

    def check(self) -> None:
        """Raises RefNotFound for a ``rev`` or an extra ref that does not resolve."""
        self.repo.resolve_rev(self.rev)
        for extra in self.extra_refs:
            self.repo.resolve_rev(extra)

    def fill(self, sysroot: Sysroot) -> tuple[Checksum, Origin]:
        """Copy the commits; the origin follows ``rev`` when it is a ref, else pins the commit."""
        csum = Checksum(self.repo.resolve_rev(self.rev))
        is_ref = self.rev != csum
        refs: dict[str, Checksum] = {self.rev: csum} if is_ref else {}
        for extra in self.extra_refs:
            refs[extra] = Checksum(self.repo.resolve_rev(extra))
        copy_commits(self.repo, sysroot.repo, refs or {f"bootree/install/{csum[:12]}": csum})
        if not refs:
            sysroot.repo.set_ref(f"bootree/install/{csum[:12]}", None)  # the deployment ref keeps it
        return csum, Origin.for_refspec(self.rev) if is_ref else Origin.for_commit(csum)

    def deployed(self, sysroot: Sysroot, deployment: Deployment) -> None:
        """Nothing more: an ostree commit carries no ``/var`` content to seed."""


def prepare_sysroot(source: Repo, rev: str, root: Path, esp_dir: Path, *, options: InstallOptions
                    ) -> tuple[Sysroot, Deployment]:
    """Assemble the sysroot of ``rev`` of ``source`` in ``root`` and its ESP in ``esp_dir``.

    Raises:
        RefNotFound: when ``rev`` does not resolve in ``source``.
        InstallError: without systemd-boot.
    """
    return prepare_sysroot_from(RepoSource(source, rev, options.extra_refs), root, esp_dir, options=options)


def prepare_sysroot_from(source: ContentSource, root: Path, esp_dir: Path, *, options: InstallOptions
                         ) -> tuple[Sysroot, Deployment]:
    """Assemble the sysroot in ``root`` and its ESP in ``esp_dir`` (both plain directories).

    Raises:
        InstallError: without systemd-boot.
        BootreeError: whatever ``source`` raises (a bad ref, an image that cannot be pulled).
    """
    if not options.systemd_boot.is_file():
        raise InstallError(f"systemd-boot not found at {options.systemd_boot}",
                           hint="install systemd-boot-efi (Debian) or pass --systemd-boot=PATH")
    source.check()
    ops.init_fs(root)
    sysroot = Sysroot.open(root)
    csum, origin = source.fill(sysroot)
    sysroot.repo.config.set(esp.CONFIG_GROUP, "esp", ESP_MOUNT)
    sysroot.repo.config.set("sysroot", "boot-counting-tries", str(options.tries))
    sysroot.repo.save_config()
    # during the install the ESP is a directory beside the sysroot, not under it
    os.makedirs(esp_dir / "EFI/BOOT", exist_ok=True)
    shutil.copyfile(options.systemd_boot, esp_dir / "EFI/BOOT/BOOTX64.EFI")
    os.makedirs(root / ESP_MOUNT, exist_ok=True)
    with sysroot.lock():
        ops.os_init(sysroot, options.stateroot)
        os.rmdir(root / ESP_MOUNT)
        os.symlink(os.path.relpath(esp_dir, (root / ESP_MOUNT).parent), root / ESP_MOUNT)
        try:
            kargs = (f"root=LABEL={disk_mod.ROOT_LABEL}", "rw", *options.kargs)
            result = deploy(sysroot, csum, stateroot=options.stateroot, origin=origin,
                            opts=DeployOptions(kargs=kargs))
            source.deployed(sysroot, result.deployment)
        finally:
            os.unlink(root / ESP_MOUNT)
            os.mkdir(root / ESP_MOUNT)  # the empty mount point of the booted system
    if options.fs_verity:
        # Only now: the copy and the deploy above ran here, where fs-verity is out of reach.
        sysroot.repo.config.set("ex-fsverity", "required", "true")
        sysroot.repo.save_config()
    return sysroot, result.deployment


def _remove_tree(work: Path) -> None:
    deploy_base = work / "root/ostree/deploy"
    if deploy_base.is_dir():
        for sr in os.listdir(deploy_base):
            d = deploy_base / sr / "deploy"
            for name in os.listdir(d) if d.is_dir() else []:
                if (d / name).is_dir():
                    immutable.set_immutable(d / name, False)
    _fs.rmtree(work)


def install_to_disk(source: Repo, rev: str, disk: Path, *, options: InstallOptions = InstallOptions()
                    ) -> InstallResult:
    """Build the disk image ``disk`` that boots ``rev`` of ``source`` (see :func:`install_from`)."""
    return install_from(RepoSource(source, rev, options.extra_refs), disk, options=options)


def install_from(source: ContentSource, disk: Path, *, options: InstallOptions = InstallOptions()) -> InstallResult:
    """Build the disk image ``disk`` that boots what ``source`` puts in its repository, through systemd-boot.

    The work happens in a temporary directory beside ``disk``; ``disk`` is replaced at the end.

    Raises:
        InstallError: missing tools, or a ``size_mib`` too small for the sysroot.
        RefNotFound, KernelNotFound: for a bad ``rev`` or a tree without a kernel.
        ExternalCommandError: when mkfs, mtools or sgdisk fail.
        BootreeError: what ``source`` raises (a registry error, an image without a kernel...).
    """
    if os.geteuid() != 0:
        # mkfs.ext4 -d copies each file's owner from the directory it reads; a sysroot whose files
        # belong to the invoking user instead of root (setuid binaries, /etc/shadow ...) would boot
        # into a broken system, so the tree itself must be assembled as root.
        raise InstallError("install to-disk must assemble root-owned files: run it as root",
                           hint="no loop devices or mounts are used; only the file ownership needs root")
    missing = [n for n, p in disk_mod.required_tools().items() if p is None]
    if missing:
        raise InstallError(f"missing tools: {', '.join(missing)}",
                           hint="install gdisk, dosfstools, mtools and e2fsprogs (Debian package names)")
    disk = disk.absolute()
    disk.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bootree-install-", dir=disk.parent))
    try:
        root, esp_dir = work / "root", work / "esp"
        _, dep = prepare_sysroot_from(source, root, esp_dir, options=options)
        entries = tuple(esp.list_entries(esp_dir))
        need = _tree_size(root) // disk_mod.MiB
        if options.size_mib is None:
            root_mib = max(256, need * 3 // 2 + 128)
        else:
            root_mib = options.size_mib - options.esp_size_mib - 2
            if root_mib < need + 32:
                raise InstallError(f"--size {options.size_mib}M is too small: the disk needs about "
                                   f"{need + 32 + options.esp_size_mib + 2}M")
        disk_mod.make_esp_image(esp_dir, work / "esp.img", size_mib=options.esp_size_mib)
        disk_mod.make_root_image(root, work / "root.img", size_mib=root_mib, fs_verity=options.fs_verity)
        tmp_disk = work / "disk.img"
        layout = disk_mod.assemble_gpt(tmp_disk, work / "esp.img", work / "root.img")
        os.replace(tmp_disk, disk)
        log.info("installed %s to %s (%s)", dep.name, disk, ", ".join(entries))
        return InstallResult(disk, layout, dep, entries)
    finally:
        _remove_tree(work)
