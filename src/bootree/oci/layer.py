"""One OCI layer tar → a tree of objects, with ostree-ext's filter and the safety rules.

Layer: oci. :func:`import_layer` reads a (gzip/zstd/plain) layer blob as a stream
(:mod:`bootree.oci.stream`: decompressed and hashed for the config's ``diff_id`` in a thread of
its own), and adds each member to a :class:`~bootree.repo.mtree.MutableTree`; file objects are
written through the caller's transaction by a pool of writer threads (so nothing is published
unless the whole image imports). The rules (bootc-oci.md §2.4):

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
* a layer of an encapsulated ostree image (ostree-ext's export, as ``container encapsulate``
  writes it) stores each file once as ``sysroot/ostree/repo/objects/xx/….file`` and links the
  tree's paths to it: the object becomes the content, each link a path (a symlink object is
  checked against the path that links to it); the rest of ``sysroot/ostree`` is not kept;
* owners, modes and ``SCHILY.xattr.*`` are kept, mtimes are not (ostree has none);
* device nodes and fifos cannot be stored: an unprivileged import refuses them, a privileged
  one skips and counts them, as ostree-ext does.
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from bootree.errors import BootreeError, LayerError
from bootree.format.checksum import Checksum
from bootree.format.objects import DirMeta, FileHeader, Xattrs, validate_filename
from bootree.format.oci import Descriptor
from bootree.format.tar import TarEntry, TarReader
from bootree.oci.stream import WritePool, read_layer
from bootree.repo.mtree import MutableTree
from bootree.repo.transaction import Transaction

__all__ = ["EMPTIED_DIRS", "LayerStats", "import_layer"]

#: Top-level directories whose contents are dropped (they are mounted at runtime).
EMPTIED_DIRS = frozenset({"run", "tmp", "proc", "sys", "dev"})
_KEPT_TOP = frozenset({"usr", "etc", "var"})
_CHUNK = 1 << 20
_OBJECTS = ["sysroot", "ostree", "repo", "objects"]
#: Files larger than this are streamed into their object instead of read whole.
_LARGE = 8 << 20


@dataclass
class LayerStats:
    """What a layer import kept and dropped."""

    files: int = 0
    bytes: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    skipped_special: int = 0


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


def _xattrs(member: TarEntry) -> Xattrs:
    return tuple(sorted(member.xattrs)) if member.xattrs else ()


class _Pending:
    """File objects still being written by the pool: their tree slots and hardlink lookups."""

    def __init__(self) -> None:
        self.futures: dict[tuple[int, str], tuple[MutableTree, Future[Checksum]]] = {}

    def add(self, node: MutableTree, name: str, fut: Future[Checksum]) -> None:
        node.set_file(name, Checksum(""))
        self.futures[(id(node), name)] = (node, fut)

    def resolve(self, root: MutableTree, parts: list[str]) -> Checksum | None:
        """The object at ``parts`` (waiting for it if the pool still writes it)."""
        csum = root.find_file(parts)
        if csum is None or csum:
            return csum
        node = root.lookup_dir(parts[:-1])
        _, fut = self.futures[(id(node), parts[-1])]
        return fut.result()

    def finish(self) -> None:
        """Wait for every write; fill in the slots that still wait for their object."""
        for (_, name), (node, fut) in self.futures.items():
            csum = fut.result()
            if node.files.get(name) == "":
                node.files[name] = csum


def import_layer(
    txn: Transaction,
    blob: Path,
    compression: str,
    diff_id: str | None,
    *,
    privileged: bool,
    allow_nonusr: bool = True,
    pool: WritePool | None = None,
    verify: Descriptor | None = None,
) -> tuple[MutableTree, LayerStats]:
    """Read one layer blob into a new tree (objects written through ``txn`` by ``pool``).

    ``verify``: also check the blob against its descriptor (a blob read in place).

    ``allow_nonusr``: keep top-level directories other than ``usr``, ``etc`` and ``var`` (see the
    module docstring); false for a layer derived from an ostree base whose root is not transient.

    Raises:
        LayerError: for an unsafe or malformed entry, a corrupt archive, a wrong diff_id.
    """
    root = MutableTree()
    stats = LayerStats()
    metas: dict[DirMeta, Checksum] = {}
    pending = _Pending()

    def dirmeta(meta: DirMeta) -> Checksum:
        c = metas.get(meta)
        if c is None:
            c = metas[meta] = txn.write_dirmeta(meta)
        return c

    objects = _Objects()

    def handle(member: TarEntry, tf: TarReader) -> None:
        _add_member(txn, tf, member, root, stats, dirmeta, privileged, allow_nonusr, pending, writer, objects)

    with contextlib.ExitStack() as stack:
        writer = pool if pool is not None else stack.enter_context(WritePool())
        read_layer(blob, compression, diff_id, handle, verify=verify)
        pending.finish()
    return root, stats


def _add_member(
    txn: Transaction,
    tf: TarReader,
    member: TarEntry,
    root: MutableTree,
    stats: LayerStats,
    dirmeta: Callable[[DirMeta], Checksum],
    privileged: bool,
    allow_nonusr: bool,
    pending: _Pending,
    pool: WritePool,
    objects: _Objects,
) -> None:
    parts = _remap(_clean_parts(member.name, member.name))
    if not parts:
        if member.isdir():
            root.meta = dirmeta(DirMeta(member.uid, member.gid, stat.S_IFDIR | (member.mode & 0o7777), _xattrs(member)))
        return
    top = parts[0]
    if _is_object(parts, member):
        # ostree-ext's encapsulated format: the object itself; the tree's paths link to it.
        xa = _xattrs(member)
        node, oname = objects.root.lookup_dir(parts[:-1]), parts[-1]
        if member.issym():
            if not member.linkname or "\0" in member.linkname:
                raise LayerError(f"layer entry {member.name!r}: empty or invalid symlink target")
            header = FileHeader(member.uid, member.gid, stat.S_IFLNK | 0o777, 0, member.linkname, xa)
            node.set_file(oname, txn.write_file(header, None))
            objects.links["/".join(parts)] = member.linkname
        else:
            _store_regular(txn, tf, member, xa, node, oname, pending, pool)
        return
    if parts[:2] == ["sysroot", "ostree"]:
        # The rest of an encapsulated image's object store (metadata objects, xattrs objects,
        # the repository skeleton) is the transport, not part of the tree.
        stats.filtered["sysroot"] = stats.filtered.get("sysroot", 0) + 1
        return
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
        if target[:4] == _OBJECTS:
            csum = pending.resolve(objects.root, target)
            if csum:
                link = objects.links.get("/".join(target))
                if link:
                    _check_symlink(parts, link, member.name)
                parent.set_file(name, csum)
                return
        csum = pending.resolve(root, target) if target else None
        if not csum:
            raise LayerError(f"layer entry {member.name!r}: hardlink to {member.linkname!r}, not an earlier file of this layer")
        parent.set_file(name, csum)
    elif member.isreg():
        _store_regular(txn, tf, member, xattrs, parent, name, pending, pool)
        stats.files += 1
        stats.bytes += member.size
    else:
        raise LayerError(f"layer entry {member.name!r} has an unsupported type")


def _store_regular(txn: Transaction, tf: TarReader, member: TarEntry, xattrs: Xattrs,
                   parent: MutableTree, name: str, pending: _Pending, pool: WritePool) -> None:
    """A regular file's content object into ``parent/name`` (large ones streamed, others on the pool)."""
    header = FileHeader(member.uid, member.gid, stat.S_IFREG | (member.mode & 0o7777), 0, "", xattrs)
    if member.size > _LARGE:
        with txn.content_writer(header, member.size) as w:
            for chunk in tf.body_chunks(_CHUNK):
                w.write(chunk)
            parent.set_file(name, w.finish())
    else:
        data = tf.read_body()
        pending.add(parent, name, pool.submit(len(data), txn.write_file, header, data))


class _Objects:
    """The content objects of an encapsulated layer (by their ``sysroot/ostree/repo`` path)."""

    def __init__(self) -> None:
        self.root = MutableTree()
        self.links: dict[str, str] = {}


def _is_object(parts: list[str], member: TarEntry) -> bool:
    """A content object of ostree-ext's encapsulated format (``sysroot/ostree/repo/objects/xx/…file``)."""
    return (len(parts) == 6 and parts[:4] == _OBJECTS and len(parts[4]) == 2 and parts[5].endswith(".file")
            and (member.isreg() or member.issym()))
