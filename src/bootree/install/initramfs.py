"""Build the initramfs of an OS tree: static busybox, the kernel modules it needs, a prepare-root init.

Layer: install. This is the job dracut's ostree module does for ostree images, reduced to what
bootree's boot chain needs: the initramfs mounts the root partition, finds the deployment named
by ``ostree=`` on the kernel command line, mounts it as ``/`` with ``/usr`` read-only, the
stateroot's ``/var`` on ``/var``, the physical root on ``/sysroot`` and its ``/boot`` on
``/boot`` (so that ``bootree`` inside the booted system finds the sysroot at ``/``), and
``switch_root``\\ s into it.

Why these modules: a distribution kernel (Debian's cloud kernel, say) builds virtio-blk, FAT/VFAT,
the NLS code pages vfat needs (437 and ascii by default) and efivarfs as modules; they are loaded
here so that the booted OS can mount the ESP and read the loader variables without a module
loader of its own. The ``.deb`` carries no ``modules.dep``; when the tree has one, dependencies
are added from it, otherwise :data:`DEFAULT_MODULES` is already in dependency order. Compressed
modules are stored decompressed (busybox ``insmod`` wants plain ``.ko``).

The archive is written here (``newc`` cpio, gzip) rather than by ``cpio``: the format is small,
and writing it ourselves makes the output reproducible (fixed mtimes, sorted names, root owner).
"""

from __future__ import annotations

import errno
import gzip
import io
import logging
import lzma
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bootree import _fs, _run
from bootree.errors import InstallError

__all__ = ["DEFAULT_MODULES", "INIT_SCRIPT", "InitramfsOptions", "build_initramfs", "cpio_newc", "find_kver"]

log = logging.getLogger(__name__)
_MODULES = "usr/lib/modules"

#: Loaded in this order (virtio before virtio_blk, fat before vfat); absent ones are built in.
DEFAULT_MODULES = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk",
    "virtio_scsi", "sd_mod", "fat", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859-1", "efivarfs",
)

#: The init of the initramfs (busybox sh). Kernel arguments: ``ostree=`` (the deployment),
#: ``root=`` (``LABEL=x``, ``UUID=x`` or a device; default ``LABEL=bootree-root``),
#: ``bootree.init=`` (what to exec in the deployment; default ``/sbin/init``), ``bootree.debug``.
INIT_SCRIPT = r"""#!/bin/busybox sh
# bootree initramfs: prepare-root for an ostree deployment, then switch_root (written by bootree).
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /run /sysroot /newroot
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /etc/bootree-modules); do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
karg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
fail() {
  echo "bootree-initramfs: $*"; echo "bootree-initramfs: block devices: $(ls /sys/class/block | tr '\n' ' ')"
  echo "bootree-initramfs: powering off"; sleep 1; poweroff -f
}
OSTREE=$(karg ostree); ROOT=$(karg root); INIT=$(karg bootree.init)
[ -n "$ROOT" ] || ROOT=LABEL=bootree-root
[ -n "$INIT" ] || INIT=/sbin/init
[ -n "$OSTREE" ] || fail "no ostree= kernel argument"
find_dev() {
  case "$1" in
    LABEL=*|UUID=*) findfs "$1" 2>/dev/null ;;
    *) [ -b "$1" ] && echo "$1" ;;
  esac
}
DEV=
for i in $(seq 1 50); do DEV=$(find_dev "$ROOT") && [ -n "$DEV" ] && break; sleep 0.1; done
[ -n "$DEV" ] || fail "root device $ROOT not found"
mount -t ext4 -o rw "$DEV" /sysroot || fail "cannot mount $DEV"
DEPLOY=$(readlink -f "/sysroot$OSTREE")
[ -d "$DEPLOY/usr" ] || fail "ostree=$OSTREE is not a deployment"
OS=$(echo "$DEPLOY" | sed -n 's|^/sysroot/ostree/deploy/\([^/]*\)/deploy/.*|\1|p')
[ -n "$OS" ] || fail "cannot find the stateroot of $DEPLOY"
mount --bind "$DEPLOY" /newroot
mount --bind /newroot/usr /newroot/usr && mount -o remount,bind,ro /newroot/usr
mount --bind "/sysroot/ostree/deploy/$OS/var" /newroot/var || fail "cannot mount /var"
[ -d /newroot/sysroot ] && mount --bind /sysroot /newroot/sysroot
[ -d /newroot/boot ] && [ -d /sysroot/boot ] && mount --bind /sysroot/boot /newroot/boot
[ -n "$(karg bootree.debug)" ] && echo "bootree-initramfs: $DEV ostree=$OSTREE -> $DEPLOY"
for m in dev proc sys; do [ -d /newroot/$m ] && mount --move /$m /newroot/$m; done
exec switch_root /newroot "$INIT"
"""


@dataclass(frozen=True, slots=True)
class InitramfsOptions:
    """What goes into the initramfs besides the init."""

    busybox: Path | None = None
    """A *static* busybox (default: ``busybox`` on PATH, e.g. Debian's busybox-static)."""
    modules: tuple[str, ...] = DEFAULT_MODULES
    init_script: str = INIT_SCRIPT


def _listdir(tree: _fs.Tree, rel: str) -> list[str]:
    try:
        return tree.listdir(rel)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        if e.errno == errno.ELOOP:  # a symlink could lead to the host's modules: not followed
            log.warning("ignoring /%s of the tree: it is a symlink", rel)
            return []
        raise


def _kind(tree: _fs.Tree, rel: str) -> int:
    try:
        st = tree.lstat(rel)
    except OSError:
        return 0
    return stat.S_IFMT(st.st_mode) if st is not None else 0


def _find_kver(tree: _fs.Tree) -> str:
    kvers = [k for k in _listdir(tree, _MODULES) if _kind(tree, f"{_MODULES}/{k}/vmlinuz") == stat.S_IFREG]
    if len(kvers) != 1:
        raise InstallError(f"expected one kernel in {tree.path}/{_MODULES}/<kver>/vmlinuz, found {len(kvers)}")
    return kvers[0]


def find_kver(tree: Path) -> str:
    """The kernel version directory of a tree: ``usr/lib/modules/<kver>/vmlinuz``.

    Paths resolve inside the tree without symlinks (a symlinked ``usr/lib/modules`` or
    ``vmlinuz`` is not followed: it could name the host's).

    Raises:
        InstallError: when there is not exactly one.
    """
    with _fs.Tree(tree) as t:
        return _find_kver(t)


def _module_index(tree: _fs.Tree, moddir: str) -> dict[str, str]:
    """Module name → path in the tree of every regular ``.ko*`` file under ``<moddir>/kernel``."""
    out: dict[str, str] = {}
    todo = [f"{moddir}/kernel"]
    while todo:
        cur = todo.pop()
        for f in _listdir(tree, cur):
            full = f"{cur}/{f}"
            kind = _kind(tree, full)
            if kind == stat.S_IFDIR:
                todo.append(full)
                continue
            if kind != stat.S_IFREG:
                continue
            for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
                if f.endswith(suffix):
                    out[f[: -len(suffix)].replace("-", "_")] = full
    return out


def _module_deps(tree: _fs.Tree, moddir: str) -> dict[str, list[str]]:
    """``modules.dep``: module → its dependencies (names), when depmod ran for this tree."""
    deps: dict[str, list[str]] = {}
    try:
        text = tree.read_bytes(f"{moddir}/modules.dep").decode("utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return deps

    def name(p: str) -> str:
        return PurePosixPath(p).name.split(".ko")[0].replace("-", "_")

    for line in text.splitlines():
        mod, _, rest = line.partition(":")
        deps[name(mod)] = [name(p) for p in rest.split()]
    return deps


def _read_module(tree: _fs.Tree, rel: str) -> bytes:
    data = tree.read_bytes(rel)
    if rel.endswith(".xz"):
        return lzma.decompress(data)
    if rel.endswith(".gz"):
        return gzip.decompress(data)
    if rel.endswith(".zst"):
        return _run.run(["zstd", "-dc", "-"], input=data).stdout
    return data


def _resolve_modules(tree: _fs.Tree, moddir: str, wanted: Sequence[str]) -> list[tuple[str, str]]:
    index, deps = _module_index(tree, moddir), _module_deps(tree, moddir)
    order: list[str] = []

    def add(m: str, depth: int = 0) -> None:
        key = m.replace("-", "_")
        if key in order or key not in index or depth > 20:
            return
        for dep in reversed(deps.get(key, [])):
            add(dep, depth + 1)
        order.append(key)

    for m in wanted:
        add(m)
    return [(m, index[m]) for m in order]


def cpio_newc(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """A ``newc`` cpio archive of ``(path, mode, data)``; for symlinks ``data`` is the target.

    Directories must come before their contents; owner root, mtime 0 (reproducible).
    """
    out = io.BytesIO()

    def pad(n: int) -> None:
        out.write(b"\0" * ((4 - n % 4) % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        nb = name.encode() + b"\0"
        fields = [ino if name != "TRAILER!!!" else 0, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data),
                  0, 0, 0, 0, len(nb), 0]
        out.write(b"070701" + "".join(f"{v:08x}" for v in fields).encode())
        out.write(nb)
        pad(110 + len(nb))
        out.write(data)
        pad(len(data))
    return out.getvalue()


def build_initramfs(tree: Path, *, kver: str | None = None, options: InitramfsOptions = InitramfsOptions(),
                    output: Path | None = None) -> Path:
    """Write ``usr/lib/modules/<kver>/initramfs.img`` of ``tree`` (or ``output``); returns its path.

    Raises:
        InstallError: without a kernel in the tree or without a busybox.
    """
    busybox = options.busybox or (Path(p) if (p := _run.find_program("busybox")) else None)
    if busybox is None or not busybox.is_file():
        raise InstallError("no busybox found for the initramfs", hint="install busybox-static (Debian)")
    with _fs.Tree(tree) as t:
        kver = kver or _find_kver(t)
        moddir = f"{_MODULES}/{kver}"
        if "/" in kver or kver in (".", "..") or _kind(t, moddir) != stat.S_IFDIR:
            raise InstallError(f"no kernel modules directory /{moddir} in {tree} (or it is a symlink)")
        mods = _resolve_modules(t, moddir, options.modules)
        missing = [m for m in options.modules if m.replace("-", "_") not in {n for n, _ in mods}]
        if missing:
            log.info("modules not found as files (built in, or absent): %s", " ".join(missing))
        entries: list[tuple[str, int, bytes]] = [
            ("bin", stat.S_IFDIR | 0o755, b""), ("etc", stat.S_IFDIR | 0o755, b""),
            ("lib", stat.S_IFDIR | 0o755, b""), ("lib/modules", stat.S_IFDIR | 0o755, b""),
            ("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()),
            ("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
            ("init", stat.S_IFREG | 0o755, options.init_script.encode()),
            ("etc/bootree-modules", stat.S_IFREG | 0o644, "".join(f"{m}\n" for m, _ in mods).encode()),
        ]
        for name, rel in mods:
            entries.append((f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, _read_module(t, rel)))
    data = gzip.compress(cpio_newc(entries), compresslevel=6, mtime=0)
    out = output or tree / moddir / "initramfs.img"  # a real directory, checked above
    _fs.write_atomic(out, data)
    log.info("initramfs %s: %d modules, %d bytes", out, len(mods), len(data))
    return out
