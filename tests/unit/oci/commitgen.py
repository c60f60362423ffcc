"""Commits written straight from a spec (owners, modes, xattrs, symlinks), for the export tests."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit, DirMeta, FileHeader
from bootree.repo import Repo
from bootree.repo.mtree import MutableTree

KERNEL = "usr/lib/modules/6.1.0-test/vmlinuz"


@dataclass(frozen=True)
class F:
    """A regular file (``data``) or, with ``target``, a symlink."""

    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    target: str = ""


@dataclass(frozen=True)
class D:
    """A directory's metadata."""

    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()


def base_spec() -> dict[str, F | D]:
    """What every exported test tree has: a kernel, ``var/tmp`` (the export adds it otherwise) and
    an empty ``sysroot`` (an ostree OS tree has one; the export's object store brings it anyway)."""
    return {KERNEL: F(b"kernel"), "sysroot": D(), "usr/lib/modules/6.1.0-test/initramfs.img": F(b"initrd"),
            "var": D(), "var/tmp": D(0o1777), "tmp": D(0o1777), "usr/etc": D(), "usr/etc/os-release": F(b"ID=t\n")}


def write_commit(repo: Repo, spec: dict[str, F | D], *, ref: str = "test", timestamp: int = 1700000000,
                 subject: str = "test", version: str | None = "1.0") -> Checksum:
    """Commit ``spec`` (paths relative to the root; missing parents are 0755 root dirs)."""
    root = MutableTree()
    with repo.transaction() as txn:
        default = txn.write_dirmeta(DirMeta(0, 0, stat.S_IFDIR | 0o755))
        root.meta = default
        for path in sorted(spec):
            entry = spec[path]
            parts = path.split("/")
            node = root
            for p in parts[:-1] if isinstance(entry, F) else parts:
                new = p not in node.dirs
                node = node.ensure_dir(p)
                if new:
                    node.meta = default
            if isinstance(entry, D):
                node.meta = txn.write_dirmeta(DirMeta(entry.uid, entry.gid, stat.S_IFDIR | entry.mode,
                                                      tuple(sorted(entry.xattrs))))
            elif entry.target:
                node.set_file(parts[-1], txn.write_file(
                    FileHeader(entry.uid, entry.gid, stat.S_IFLNK | 0o777, 0, entry.target,
                               tuple(sorted(entry.xattrs))), None))
            else:
                node.set_file(parts[-1], txn.write_file(
                    FileHeader(entry.uid, entry.gid, stat.S_IFREG | entry.mode, 0, "", tuple(sorted(entry.xattrs))),
                    entry.data))
        tree, meta = root.write(txn)
        md = (("version", Variant("s", version)),) if version else ()
        csum = txn.write_commit(Commit(tree, meta, None, subject, "", timestamp, md))
        txn.set_ref(ref, csum)
    return csum
