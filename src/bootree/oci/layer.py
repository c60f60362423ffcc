"""One OCI layer tar → a tree of objects, with ostree-ext's filter and the safety rules.

Layer: oci. :func:`import_layer` reads a (gzip/zstd/plain) layer blob as a stream, hashes the
decompressed bytes to check the config's ``diff_id``, and adds each member to a
:class:`~bootree.repo.mtree.MutableTree` through the caller's transaction (so nothing is
published unless the whole image imports). The rules (bootc-oci.md §2.4):

* ``./`` is dropped; an absolute path, ``..``, a NUL, a symlink whose relative target climbs
  out of the root, a hardlink to anything but an earlier member: :class:`LayerError`;
* ``etc/`` becomes ``usr/etc/`` (hardlink targets too); under ``run tmp proc sys dev`` only the
  top directory is kept; other top-level directories (``sysroot``, ``boot``, ``opt``...) are kept
  unless ``allow_nonusr`` is false, then dropped and counted (top-level symlinks such as
  ``bin -> usr/bin`` stay). ostree-ext drops them only for layers derived from an ostree base
  commit whose root is not transient; an image without one (every image bootree imports: a plain
  image built by any tool) is assumed to have a transient (composefs) root and keeps them, which
  is what gives its deployments the ``/sysroot`` and ``/boot`` mount points prepare-root needs;
* whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are kept as plain files: they act at merge time;
* owners, modes and ``SCHILY.xattr.*`` are kept, mtimes are not (ostree has none);
* device nodes and fifos cannot be stored: an unprivileged import refuses them, a privileged
  one skips and counts them, as ostree-ext does.
"""

from __future__ import annotations

import gzip
import hashlib
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from bootree.errors import BootreeError, LayerError
from bootree.format.checksum import Checksum
from bootree.format.objects import DirMeta, FileHeader, Xattrs, validate_filename
from bootree.format.oci import Compression
from bootree.repo.mtree import MutableTree
from bootree.repo.transaction import Transaction

__all__ = ["EMPTIED_DIRS", "LayerStats", "import_layer"]

#: Top-level directories whose contents are dropped (they are mounted at runtime).
EMPTIED_DIRS = frozenset({"run", "tmp", "proc", "sys", "dev"})
_KEPT_TOP = frozenset({"usr", "etc", "var"})
_CHUNK = 1 << 20


@dataclass
class LayerStats:
    """What a layer import kept and dropped."""

    files: int = 0
    bytes: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    skipped_special: int = 0


class _HashingReader:
    """A read-only stream that hashes what passes through (the layer's diff_id)."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.hasher = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hasher.update(data)
        return data

    def drain(self) -> str:
        for chunk in iter(lambda: self.inner.read(_CHUNK), b""):
            self.hasher.update(chunk)
        return "sha256:" + self.hasher.hexdigest()


def _decompressed(f: BinaryIO, compression: str) -> BinaryIO:
    if compression == Compression.GZIP:
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if compression == Compression.ZSTD:
        import zstandard  # only zstd layers need it

        # read_across_frames: zstd:chunked blobs have many frames (and skippable ones).
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    return f


def _clean_parts(name: str, member: str) -> list[str]:
    if name.startswith("/"):
        raise LayerError(f"layer entry {member!r} has an absolute path")
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise LayerError(f"layer entry {member!r} escapes the root ('..')")
        try:
            validate_filename(p)
        except BootreeError as e:
            raise LayerError(f"layer entry {member!r}: {e}") from None
        parts.append(p)
    return parts


def _remap(parts: list[str]) -> list[str]:
    return ["usr", *parts] if parts and parts[0] == "etc" else parts


def _check_symlink(parts: list[str], target: str, member: str) -> None:
    if not target or "\0" in target:
        raise LayerError(f"layer entry {member!r}: empty or invalid symlink target")
    if target.startswith("/"):
        return  # resolved inside the deployment root at run time
    depth = len(parts) - 1
    for p in target.split("/"):
        if p == "..":
            depth -= 1
            if depth < 0:
                raise LayerError(f"layer entry {member!r}: symlink target {target!r} escapes the root")
        elif p not in ("", "."):
            depth += 1


def _xattrs(member: tarfile.TarInfo) -> Xattrs:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            raw = value.encode("utf-8", "surrogateescape")
            out.append((key[len("SCHILY.xattr.") :].encode("utf-8", "surrogateescape"), raw))
    return tuple(sorted(out))


def import_layer(
    txn: Transaction,
    blob: Path,
    compression: str,
    diff_id: str | None,
    *,
    privileged: bool,
    allow_nonusr: bool = True,
) -> tuple[MutableTree, LayerStats]:
    """Read one layer blob into a new tree (objects written through ``txn``).

    ``allow_nonusr``: keep top-level directories other than ``usr``, ``etc`` and ``var`` (see the
    module docstring); false for a layer derived from an ostree base whose root is not transient.

    Raises:
        LayerError: for an unsafe or malformed entry, a corrupt archive, a wrong diff_id.
    """
    root = MutableTree()
    stats = LayerStats()
    metas: dict[DirMeta, Checksum] = {}

    def dirmeta(meta: DirMeta) -> Checksum:
        c = metas.get(meta)
        if c is None:
            c = metas[meta] = txn.write_dirmeta(meta)
        return c

    with open(blob, "rb") as raw:
        reader = _HashingReader(_decompressed(raw, compression))
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[call-overload]
                for member in tf:
                    _add_member(txn, tf, member, root, stats, dirmeta, privileged, allow_nonusr)
            got = reader.drain()
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise LayerError(f"layer {blob.name}: cannot read tar: {e}") from None
        except Exception as e:
            if isinstance(e, BootreeError):
                raise
            if type(e).__name__ == "ZstdError":
                raise LayerError(f"layer {blob.name}: bad zstd data: {e}") from None
            raise
    if diff_id is not None and got != diff_id:
        raise LayerError(f"layer {blob.name}: uncompressed digest {got} does not match diff_id {diff_id}")
    return root, stats


def _add_member(
    txn: Transaction,
    tf: tarfile.TarFile,
    member: tarfile.TarInfo,
    root: MutableTree,
    stats: LayerStats,
    dirmeta: object,
    privileged: bool,
    allow_nonusr: bool,
) -> None:
    assert callable(dirmeta)
    parts = _remap(_clean_parts(member.name, member.name))
    if not parts:
        if member.isdir():
            root.meta = dirmeta(DirMeta(member.uid, member.gid, stat.S_IFDIR | (member.mode & 0o7777), _xattrs(member)))
        return
    top = parts[0]
    if top in EMPTIED_DIRS:
        if len(parts) == 1 and member.isdir():
            root.ensure_dir(top).meta = dirmeta(DirMeta(member.uid, member.gid, stat.S_IFDIR | (member.mode & 0o7777), ()))
        else:
            stats.filtered[top] = stats.filtered.get(top, 0) + 1
        return
    if not allow_nonusr and top not in _KEPT_TOP and not (len(parts) == 1 and member.issym()):
        stats.filtered[top] = stats.filtered.get(top, 0) + 1
        return
    if member.ischr() or member.isblk() or member.isfifo():
        if not privileged:
            raise LayerError(f"layer entry {member.name!r} is a device node or fifo (refused in an unprivileged import)")
        stats.skipped_special += 1
        return
    xattrs = _xattrs(member)
    if member.isdir():
        root.lookup_dir(parts).meta = dirmeta(
            DirMeta(member.uid, member.gid, stat.S_IFDIR | (member.mode & 0o7777), xattrs))
        return
    parent = root.lookup_dir(parts[:-1])
    name = parts[-1]
    if member.issym():
        _check_symlink(parts, member.linkname, member.name)
        header = FileHeader(member.uid, member.gid, stat.S_IFLNK | 0o777, 0, member.linkname, xattrs)
        parent.set_file(name, txn.write_file(header, None))
    elif member.islnk():
        if member.linkname.startswith("/"):
            raise LayerError(f"layer entry {member.name!r}: hardlink target {member.linkname!r} is absolute")
        target = _remap(_clean_parts(member.linkname, member.name))
        csum = root.find_file(target) if target else None
        if not csum:
            raise LayerError(f"layer entry {member.name!r}: hardlink to {member.linkname!r}, not an earlier file of this layer")
        parent.set_file(name, csum)
    elif member.isreg():
        header = FileHeader(member.uid, member.gid, stat.S_IFREG | (member.mode & 0o7777), 0, "", xattrs)
        f = tf.extractfile(member)
        assert f is not None
        if member.size > 8 << 20:
            with txn.content_writer(header, member.size) as w:
                left = member.size
                while left:
                    chunk = f.read(min(_CHUNK, left))
                    if not chunk:
                        raise LayerError(f"layer entry {member.name!r} is truncated")
                    w.write(chunk)
                    left -= len(chunk)
                csum = w.finish()
        else:
            data = f.read(member.size)
            if len(data) != member.size:
                raise LayerError(f"layer entry {member.name!r} is truncated")
            csum = txn.write_file(header, data)
        parent.set_file(name, csum)
        stats.files += 1
        stats.bytes += member.size
    else:
        raise LayerError(f"layer entry {member.name!r} has an unsupported type")
