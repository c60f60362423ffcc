"""The composefs rewrite of a tree: the inodes an image holds, before any byte is laid out.

Layer: format (pure). Rule 1 of the writer (:mod:`bootree.format.erofs`, which lays these inodes
out and encodes them): mkcomposefs does not store the tree it is given, but a clone in which
``trusted.overlay.*`` xattrs are escaped one level, each external file becomes a sparse stub
with ``trusted.overlay.metacopy`` (carrying its fs-verity digest) and ``.redirect`` (its object
path), whiteouts (char 0/0) become regular files with escaped markers, every directory gets
``.``/``..``, and the root is made opaque with 256 stub whiteouts ``00``..``ff`` that hide the
object store's fan-out directories. :func:`rewrite_tree` returns that clone in breadth-first
order (children sorted by bytes), which is the order inodes are placed in the image. Split from
the layout because the two change for different reasons: this part follows overlayfs's xattr
conventions, the layout follows EROFS's on-disk rules.

See shared/reference/composefs-erofs.md §1.4 for the rewrite.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

from bootree.errors import ComposefsFormatError
from bootree.format.composefs_dump import Node, XattrBudget

__all__ = [
    "BLOCK_BITS",
    "ESC_OPAQUE",
    "ESC_WHITEOUT",
    "ESC_WHITEOUTS",
    "MAX_CHUNKS",
    "METACOPY",
    "OPAQUE",
    "REDIRECT",
    "USER_OPAQUE",
    "USER_WHITEOUT",
    "USER_WHITEOUTS",
    "Inode",
    "WriteOptions",
    "chunking",
    "rewrite_tree",
]

#: log2 of the EROFS block size composefs always uses (4096).
BLOCK_BITS = 12
#: An external file is described by at most this many chunk indexes (mkcomposefs's limit).
MAX_CHUNKS = 1024

_OVL = b"trusted.overlay."
_OVL_ESC = b"trusted.overlay.overlay."
METACOPY = b"trusted.overlay.metacopy"
REDIRECT = b"trusted.overlay.redirect"
OPAQUE = b"trusted.overlay.opaque"
ESC_WHITEOUT = b"trusted.overlay.overlay.whiteout"
ESC_WHITEOUTS = b"trusted.overlay.overlay.whiteouts"
ESC_OPAQUE = b"trusted.overlay.overlay.opaque"
USER_WHITEOUT = b"user.overlay.whiteout"
USER_WHITEOUTS = b"user.overlay.whiteouts"
USER_OPAQUE = b"user.overlay.opaque"


@dataclass(frozen=True, slots=True)
class WriteOptions:
    """mkcomposefs's ``--min-version``/``--max-version``: the format starts at ``version`` and is
    raised to 1 (``opaque=x`` whiteout markers) only when the tree has a whiteout and
    ``max_version`` allows it. ostree writes with 0/1, the defaults."""

    version: int = 0
    max_version: int = 1


def chunking(size: int) -> tuple[int, int]:
    """(chunkbits, chunk count) of an external file: as few chunks as possible."""
    bits = max((size - 1).bit_length(), BLOCK_BITS)
    bits = min(bits, BLOCK_BITS + 31)
    return bits, -(-size // (1 << bits))


class Inode:
    """One inode of the image being written (the rewritten clone of a :class:`Node`)."""

    __slots__ = (
        "budget",
        "compact",
        "content",
        "digest",
        "entries",
        "gid",
        "index",
        "inline",
        "ipad",
        "isize",
        "mode",
        "mtime",
        "n_blocks",
        "nid",
        "nlink",
        "parent",
        "payload",
        "rdev",
        "shared",
        "size",
        "subdirs",
        "tail",
        "uid",
        "xattrs",
        "xsize",
    )

    def __init__(self, node: Node, parent: Inode | None) -> None:
        self.mode = node.mode
        self.uid = node.uid
        self.gid = node.gid
        self.nlink = node.nlink
        self.rdev = node.rdev
        self.size = node.size
        self.mtime = (node.mtime_sec, node.mtime_nsec)
        self.payload = node.payload
        self.content = node.content
        self.digest = node.digest
        self.xattrs = dict(node.xattrs)
        self.budget = XattrBudget()
        self.budget.used = node.budget.used
        self.parent = parent if parent is not None else self
        self.entries: list[tuple[bytes, Inode, bool]] = []  # (name, inode, is a real child)
        self.subdirs = 0
        self.n_blocks = 0
        self.tail = 0
        self.index = 0
        # Layout results (write_image): placement, sizes and the xattr split.
        self.compact = True
        self.nid = 0
        self.ipad = 0
        self.isize = 0
        self.xsize = 0
        self.shared: list[int] = []
        self.inline: list[tuple[bytes, bytes]] = []

    def set_xattr(self, name: bytes, value: bytes) -> None:
        try:
            self.budget.set(self.xattrs, name, value)
        except ComposefsFormatError as e:
            raise ComposefsFormatError(f"cannot add {name.decode(errors='replace')}: {e.message}") from None


def _has_whiteout(node: Node) -> bool:
    stack = [node]
    while stack:
        n = stack.pop()
        if stat.S_ISCHR(n.mode) and n.rdev == 0:
            return True
        stack.extend(c for c in n.children.values() if c.link_to is None)
    return False


def _rewrite(
    node: Node,
    parent: Inode | None,
    version: int,
    links: list[tuple[Inode, bytes, Node]],
    made: dict[int, Inode],
) -> Inode:
    """Clone ``node`` with the composefs rewrite (§1.4), depth first like mkcomposefs."""
    ino = Inode(node, parent)
    made[id(node)] = ino
    ftype = stat.S_IFMT(ino.mode)
    if ftype == stat.S_IFREG and ino.size > 0 and ino.content is None and chunking(ino.size)[1] > MAX_CHUNKS:
        raise ComposefsFormatError(f"file too big for a composefs stub ({ino.size} bytes)")
    if any(k.startswith(_OVL) for k in ino.xattrs):
        ino.xattrs = {
            (_OVL_ESC + k[len(_OVL) :] if k.startswith(_OVL) else k): v for k, v in ino.xattrs.items()
        }
    if ftype == stat.S_IFREG and ino.size > 0 and ino.content is None:
        meta = b"\x00\x24\x00\x01" + ino.digest if ino.digest is not None else b""
        ino.set_xattr(METACOPY, meta)
        if ino.payload:
            ino.set_xattr(REDIRECT, ino.payload if ino.payload.startswith(b"/") else b"/" + ino.payload)
    if ftype == stat.S_IFCHR and ino.rdev == 0 and parent is not None:
        ino.size = 0
        ino.mode = stat.S_IFREG | (ino.mode & ~stat.S_IFMT(ino.mode))
        ino.set_xattr(ESC_WHITEOUT, b"")
        ino.set_xattr(USER_WHITEOUT, b"")
        parent.set_xattr(ESC_WHITEOUTS, b"")
        parent.set_xattr(USER_WHITEOUTS, b"")
        if version >= 1:
            parent.set_xattr(ESC_OPAQUE, b"x")
            parent.set_xattr(USER_OPAQUE, b"x")
    if node.is_dir:
        entries = ino.entries
        entries.append((b".", ino, False))
        entries.append((b"..", ino.parent, False))
        for name, child in node.children.items():
            if child.link_to is not None:
                links.append((ino, name, child.target()))
                continue
            cino = _rewrite(child, ino, version, links, made)
            entries.append((name, cino, True))
            if stat.S_ISDIR(child.mode):
                ino.subdirs += 1
    elif node.children:
        raise ComposefsFormatError("only directories can have children")
    return ino


def rewrite_tree(root: Node, options: WriteOptions) -> tuple[list[Inode], int]:
    """Rewrite and order the tree: the inodes in BFS order, and the format version."""
    if not root.is_dir:
        raise ComposefsFormatError("the root must be a directory")
    if options.version > 1 or options.max_version > 1 or options.version < 0:
        raise ComposefsFormatError(
            f"unsupported composefs format version {options.version}..{options.max_version}"
        )
    version = options.version
    if version < 1 <= options.max_version and _has_whiteout(root):
        version = 1
    links: list[tuple[Inode, bytes, Node]] = []
    made: dict[int, Inode] = {}
    try:
        rino = _rewrite(root, None, version, links, made)
    except RecursionError:
        raise ComposefsFormatError("directory tree too deep") from None
    for parent, name, target in links:
        tino = made.get(id(target))
        if tino is None:
            raise ComposefsFormatError(f"hardlink {name!r} to an inode outside the tree")
        if stat.S_ISDIR(tino.mode):
            raise ComposefsFormatError("directories cannot be hardlinked")
        parent.entries.append((name, tino, False))
    rino.set_xattr(OPAQUE, b"y")
    present = {e[0] for e in rino.entries}
    selinux = rino.xattrs.get(b"security.selinux")
    stub_node = Node(
        mode=stat.S_IFCHR | 0o644,
        uid=root.uid,
        gid=root.gid,
        mtime_sec=root.mtime_sec,
        mtime_nsec=root.mtime_nsec,
    )
    for i in range(256):
        name = b"%02x" % i
        if name in present:
            continue
        stub = Inode(stub_node, rino)
        stub.xattrs = {}
        if selinux is not None:
            stub.set_xattr(b"security.selinux", selinux)
        rino.entries.append((name, stub, True))
    order = [rino]
    append = order.append
    for ino in order:  # grows while iterated: breadth first
        if ino.entries:
            ino.entries.sort(key=lambda e: e[0])
            ino.nlink = 2 + ino.subdirs
            for _name, child, real in ino.entries:
                if real:
                    append(child)
    for index, ino in enumerate(order):
        ino.index = index
    return order, version
