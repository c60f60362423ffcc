"""Build the initramfs of an OS tree: static busybox, the kernel modules it needs, a prepare-root init.

Layer: install. This is the job dracut's ostree module does for ostree images, reduced to what
bootree's boot chain needs: the initramfs mounts the root partition, finds the deployment named
by ``ostree=`` on the kernel command line, mounts it as ``/`` with ``/usr`` read-only, the
stateroot's ``/var`` on ``/var``, the physical root on ``/sysroot`` and its ``/boot`` on
``/boot`` (so that ``bootree`` inside the booted system finds the sysroot at ``/``), and
``switch_root``\\ s into it. When the deployment's ``prepare-root.conf`` enables composefs, the root
is instead its ``.ostree.cfs`` (EROFS) under a read-only overlay over ``ostree/repo/objects``, with
``verity=require`` for ``verity``/``signed``, and ``/etc`` bound from the deployment.

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
from bootree.errors import InstallError, KeyFileError
from bootree.format.keyfile import KeyFile
from bootree.install import rootsign

__all__ = [
    "DEFAULT_MODULES",
    "INIT_SCRIPT",
    "ROOT_BINDING_KEY",
    "InitramfsOptions",
    "build_initramfs",
    "cpio_newc",
    "find_kver",
]

log = logging.getLogger(__name__)
_MODULES = "usr/lib/modules"
#: ostree's default ``[composefs] keypath``: the ed25519 public keys ``signed`` trusts.
ROOT_BINDING_KEY = "/etc/ostree/initramfs-root-binding.key"

#: Loaded in this order (virtio before virtio_blk, fat before vfat); absent ones are built in.
DEFAULT_MODULES = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk",
    "virtio_scsi", "sd_mod", "fat", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859-1", "efivarfs",
    "libcrc32c", "erofs", "overlay", "loop",  # composefs: the EROFS image under an overlay
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
# A deployment that must not be entered (its image, its signature or its objects do not check
# out): reboot, so that the loader counts the try and, once the entry's tries are spent, falls
# back to the previous entry by itself (as for a failed health check).
refuse() {
  echo "bootree-initramfs: $*"; echo "bootree-initramfs: refusing to enter $OSTREE, rebooting"; sleep 1; reboot -f
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
# composefs (issue 14): [composefs] enabled of prepare-root.conf, or the
# ostree.prepare-root.composefs karg: the deployment's .ostree.cfs (EROFS) under a read-only
# overlay whose data-only layer is the repository's objects; verity/signed add verity=require.
# The config is the initramfs's own (usr/lib, then etc replacing it as a whole, as ostree loads
# it), so a deployment cannot switch its own checks off; an initramfs built without one falls
# back to the deployment's.
ROOTCONF=
for f in "$INITRD/usr/lib/ostree/prepare-root.conf" "$INITRD/etc/ostree/prepare-root.conf"; do  # INITRD: unset but in tests
  [ -f "$f" ] && ROOTCONF=$f
done
if [ -z "$ROOTCONF" ]; then
  for f in "$DEPLOY/usr/lib/ostree/prepare-root.conf" "$DEPLOY/etc/ostree/prepare-root.conf"; do
    [ -f "$f" ] && ROOTCONF=$f
  done
fi
conf_get() {
  [ -n "$ROOTCONF" ] || return 0
  sed -n "/^\[$1\]/,/^\[/s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\([^[:space:]]*\).*/\1/p" "$ROOTCONF" | tail -1
}
cfs_mode() {
  v=$(conf_get composefs enabled); [ -n "$v" ] || v=no
  k=$(karg ostree.prepare-root.composefs); [ -n "$k" ] && v=$k
  case "$v" in no|false|0) v= ;; yes|true|1) v=yes ;; esac
  echo "$v"
}
# fs-verity digest (SHA-256, 4 KiB blocks, no salt) of a file, in busybox sh: dd + sha256sum + xxd.
fsverity_hex() {
  f=$1; t=$2; size=$(stat -c %s "$f")
  [ "$size" -gt 0 ] || { echo 3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95; return; }
  n=$(( (size + 4095) / 4096 )); i=0; : > "$t.hex"
  while [ $i -lt $n ]; do
    { dd if="$f" bs=4096 skip=$i count=1 2>/dev/null; [ $(( (i + 1) * 4096 )) -le "$size" ] || head -c $(( (i + 1) * 4096 - size )) /dev/zero; } \
      | sha256sum | cut -c1-64 >> "$t.hex"
    i=$((i + 1))
  done
  while [ "$n" -gt 1 ]; do
    tr -d '\n' < "$t.hex" | xxd -r -p > "$t.lvl"
    len=$(( n * 32 )); n=$(( (len + 4095) / 4096 )); i=0; : > "$t.hex"
    while [ $i -lt $n ]; do
      { dd if="$t.lvl" bs=4096 skip=$i count=1 2>/dev/null; [ $(( (i + 1) * 4096 )) -le "$len" ] || head -c $(( (i + 1) * 4096 - len )) /dev/zero; } \
        | sha256sum | cut -c1-64 >> "$t.hex"
      i=$((i + 1))
    done
  done
  le=; i=0
  while [ $i -lt 8 ]; do le="$le$(printf %02x $(( (size >> (8 * i)) & 255 )))"; i=$((i + 1)); done
  { printf '01010c0000000000%s%s' "$le" "$(tr -d '\n' < "$t.hex")"; head -c 208 /dev/zero | od -An -v -tx1 | tr -d ' \n'; } \
    | xxd -r -p | sha256sum | cut -c1-64
}
# The ostree.composefs.digest.v0 (ay, 32 bytes) of a commit object, in hex; empty if absent.
# The metadata a{sv} opens the commit, each entry 8-aligned: key, NUL, padding to 8, then the
# variant's 32 bytes, NUL and its type "ay".
commit_cfs_digest() {
  od -An -v -tx1 "$1" | tr -d ' \n' | awk '{
    key = "6f73747265652e636f6d706f736566732e6469676573742e763000"
    p = index($0, key)
    if (p > 0 && (p - 1) % 16 == 0 && substr($0, p + 128, 6) == "006179") print substr($0, p + 64, 64)
  }'
}
CFS=$(cfs_mode)
CFSIMG="$DEPLOY/.ostree.cfs"
if [ -n "$CFS" ] && [ -f "$CFSIMG" ]; then
  # The image must have the digest its commit records; the commit is the one the deployment is
  # named after (its sha256 is its checksum), so the chain from the ostree= karg is unbroken.
  CSUM=$(basename "$DEPLOY" | cut -d. -f1)
  COBJ="/sysroot/ostree/repo/objects/$(echo "$CSUM" | cut -c1-2)/$(echo "$CSUM" | cut -c3-).commit"
  [ -f "$COBJ" ] && [ "$(sha256sum "$COBJ" | cut -c1-64)" = "$CSUM" ] || refuse "commit $CSUM is missing or corrupt"
  if [ "$CFS" = signed ]; then
    # The commit must be signed by a key of the initramfs before its digest is trusted.
    KEYS=$(conf_get composefs keypath); [ -n "$KEYS" ] || KEYS=/etc/ostree/initramfs-root-binding.key
    [ -s "$KEYS" ] || refuse "composefs=signed but the initramfs has no keys in $KEYS"
    . /lib/bootree/signed.sh
    SIGNER=$(check_signed "$COBJ" "$KEYS"); rc=$?
    [ $rc = 2 ] && refuse "commit $CSUM carries no ed25519 signature"
    [ $rc = 0 ] || refuse "commit $CSUM has no valid ed25519 signature by a key in $KEYS"
    echo "bootree-initramfs: commit $CSUM signed by $SIGNER"
  fi
  WANT=$(commit_cfs_digest "$COBJ")
  if [ -n "$WANT" ]; then
    mkdir -p /run/bootree
    GOT=$(fsverity_hex "$CFSIMG" /run/bootree/fsverity)
    [ "$GOT" = "$WANT" ] || refuse "composefs image digest mismatch: $CFSIMG has $GOT, commit $CSUM records $WANT"
    echo "bootree-initramfs: composefs digest $GOT matches the commit"
  elif [ "$CFS" = signed ]; then
    refuse "composefs=signed but commit $CSUM records no composefs digest"
  fi
  LOWER=/run/ostree/.private/cfsroot-lower
  mkdir -p "$LOWER"
  VOPT=; case "$CFS" in verity|signed) VOPT=,verity=require ;; esac
  mount -t erofs -o ro "$CFSIMG" "$LOWER" 2>/dev/null || mount -t erofs -o ro,loop "$CFSIMG" "$LOWER" \
    || refuse "cannot mount the composefs image $CFSIMG"
  mount -t overlay overlay -o "ro,lowerdir=$LOWER::/sysroot/ostree/repo/objects,redirect_dir=on,metacopy=on$VOPT" /newroot \
    || refuse "cannot mount the composefs overlay (composefs=$CFS)"
  umount -l "$LOWER"
  # With verity=require an object without fs-verity (or with another digest) fails only when it
  # is opened: read the init through the overlay now, so such a root is refused here.
  if [ -n "$VOPT" ] && ! head -c 1 "/newroot$(readlink -f "/newroot$INIT" | sed 's|^/newroot||')" >/dev/null 2>&1; then
    umount /newroot; refuse "cannot read $INIT through the composefs root: fs-verity missing or wrong"
  fi
  mount --bind "$DEPLOY/etc" /newroot/etc || fail "cannot mount /etc"
  echo "bootree-initramfs: composefs=$CFS root $CFSIMG"
elif [ -n "$CFS" ] && [ "$CFS" != maybe ]; then
  refuse "composefs=$CFS but $CFSIMG is missing"
else
  mount --bind "$DEPLOY" /newroot
  mount --bind /newroot/usr /newroot/usr && mount -o remount,bind,ro /newroot/usr
fi
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


def _read_optional(tree: _fs.Tree, rel: str) -> bytes | None:
    if _kind(tree, rel) != stat.S_IFREG:
        return None  # absent, or a symlink (it could name a host file): not followed
    return tree.read_bytes(rel)


def _root_config(tree: _fs.Tree) -> list[tuple[str, int, bytes]]:
    """prepare-root's config, its trusted keys and the signature check, for the initramfs.

    As ostree's dracut module does, the tree's ``prepare-root.conf`` (``usr/lib`` and ``etc``) and
    the ``keypath`` it names (default :data:`ROOT_BINDING_KEY`) are copied in: the initramfs, not
    the deployment it is about to check, decides whether composefs, fs-verity and a signature are
    required. Without a config nothing is copied (the init then reads the deployment's).
    """
    confs = [(rel, data) for rel in ("usr/lib/ostree/prepare-root.conf", "etc/ostree/prepare-root.conf")
             if (data := _read_optional(tree, rel)) is not None]
    out: list[tuple[str, int, bytes]] = [
        ("lib/bootree", stat.S_IFDIR | 0o755, b""),
        (rootsign.ED25519_BC_PATH, stat.S_IFREG | 0o644, rootsign.ED25519_BC.encode()),
        (rootsign.SIGNED_SH_PATH, stat.S_IFREG | 0o644, rootsign.SIGNED_SH.encode()),
    ]
    if not confs:
        return out
    files = dict(confs)
    keypath = ROOT_BINDING_KEY
    try:
        value = KeyFile.from_text(confs[-1][1].decode("utf-8")).get("composefs", "keypath")
    except (KeyFileError, UnicodeDecodeError) as e:
        raise InstallError(f"{tree.path}/{confs[-1][0]}: {e}") from e
    if value:
        keypath = value.strip()
    rel = str(PurePosixPath(keypath)).lstrip("/")
    if ".." in PurePosixPath(rel).parts or not rel:
        raise InstallError(f"prepare-root.conf: keypath {keypath!r} must be an absolute path inside the tree")
    key = _read_optional(tree, rel)
    if key is not None:
        files[rel] = key
    dirs: set[str] = set()
    for name in files:
        parts = PurePosixPath(name).parts[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    out += [(d, stat.S_IFDIR | 0o755, b"") for d in sorted(dirs - {"etc", "lib", "lib/bootree"}, key=len)]
    out += [(name, stat.S_IFREG | 0o644, data) for name, data in sorted(files.items())]
    log.info("initramfs: prepare-root config %s, keys %s", ", ".join(n for n, _ in confs),
             rel if key is not None else "(none)")
    return out


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
        entries += _root_config(t)
    data = gzip.compress(cpio_newc(entries), compresslevel=6, mtime=0)
    out = output or tree / moddir / "initramfs.img"  # a real directory, checked above
    _fs.write_atomic(out, data)
    log.info("initramfs %s: %d modules, %d bytes", out, len(mods), len(data))
    return out
