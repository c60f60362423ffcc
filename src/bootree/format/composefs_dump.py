"""The composefs tree model and its text form, ``composefs-dump(5)``.

Layer: format (pure). A composefs image is built from a tree of :class:`Node` values; the dump
file is one line per node::

    PATH SIZE MODE NLINK UID GID RDEV MTIME PAYLOAD CONTENT DIGEST [XATTR=VALUE ...]

``MODE`` is octal and starts with ``@`` for a hardlink (whose ``PAYLOAD`` is then the target's
path), ``MTIME`` is ``SEC.NSEC``, absent fields are ``-`` and bytes are escaped as ``\\\\``,
``\\n``, ``\\r``, ``\\t`` or ``\\xHH``. The upstream project's golden images are built from such
files, which makes this parser the entry point of the byte-compatibility tests. It follows
mkcomposefs's (non-strict) reading rules, since the same dump must give the same image: a
symlink's SIZE is replaced by the target's length, RDEV counts only for devices, a repeated
xattr replaces the earlier value, hardlinks are resolved after the whole file is read and keep
the target's NLINK from the file.

Names, payloads and xattr names are ``bytes`` (a file name is any bytes but ``/`` and NUL).
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from bootree.errors import ComposefsFormatError

__all__ = [
    "INLINE_CONTENT_MAX",
    "MAX_NAME_LENGTH",
    "Node",
    "XattrBudget",
    "format_dump",
    "iter_nodes",
    "parse_dump",
    "unescape",
]

#: Longest file name (bytes).
MAX_NAME_LENGTH = 255
#: Most bytes a dump file may inline in the image (mkcomposefs's ``LCFS_INLINE_CONTENT_MAX``).
INLINE_CONTENT_MAX = 5000
#: Longest payload (symlink target or backing path): below ``PATH_MAX``.
MAX_PAYLOAD_LENGTH = 4095
#: Per-inode xattr space accepted from external input (mkcomposefs's accounting, below).
EXTERNAL_XATTR_MAX = 0xFFFF // 2

_VALID_TYPES = frozenset(
    {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFBLK, stat.S_IFCHR, stat.S_IFIFO, stat.S_IFSOCK}
)


class XattrBudget:
    """mkcomposefs's running estimate of an inode's xattr space, which caps external input.

    Every set adds ``2*4 - 1 + len(name) + len(value)`` (plus 12 for the first xattr), a
    removal subtracts it again, and a set that would pass :data:`EXTERNAL_XATTR_MAX` fails.
    Reproduced so that the same over-large inputs are refused.
    """

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0

    def set(self, xattrs: dict[bytes, bytes], name: bytes, value: bytes) -> None:
        if not name or len(name) > 255:
            raise ComposefsFormatError(f"invalid xattr name length {len(name)}")
        if len(value) > 0xFFFF:
            raise ComposefsFormatError(f"xattr {name!r} value too long ({len(value)} bytes)")
        old = xattrs.pop(name, None)
        if old is not None:
            self.used = self.used - (7 + len(name) + len(old)) if xattrs else 0
        entry = 7 + len(name) + len(value) + (12 if not xattrs else 0)
        if self.used + entry > EXTERNAL_XATTR_MAX:
            if old is not None:
                xattrs[name] = old
            raise ComposefsFormatError(f"too many xattrs (adding {name!r} passes {EXTERNAL_XATTR_MAX} bytes)")
        xattrs[name] = value
        self.used += entry


@dataclass(eq=False, slots=True)
class Node:
    """One inode of a composefs tree (or, with ``link_to`` set, a hardlink to another).

    ``payload`` is a regular file's backing path (relative to the data directory) or a
    symlink's target; ``content`` is inline file data; ``digest`` is the backing file's
    fs-verity digest (32 bytes). Directories hold ``children`` by name.
    """

    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    rdev: int = 0
    size: int = 0
    mtime_sec: int = 0
    mtime_nsec: int = 0
    payload: bytes | None = None
    content: bytes | None = None
    digest: bytes | None = None
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    children: dict[bytes, Node] = field(default_factory=dict)
    link_to: Node | None = None
    budget: XattrBudget = field(default_factory=XattrBudget, repr=False)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def target(self) -> Node:
        """The inode this entry names: itself, or the end of its hardlink chain."""
        node = self
        seen = 0
        while node.link_to is not None:
            node = node.link_to
            seen += 1
            if node is self or seen > 1 << 20:
                raise ComposefsFormatError("hardlink loop")
        return node

    def add_child(self, name: bytes, child: Node) -> None:
        """Add ``child`` as ``name`` (validated: 1–255 bytes, no ``/`` or NUL, not ``.``/``..``)."""
        if not self.is_dir:
            raise ComposefsFormatError(f"cannot add {name!r}: parent is not a directory")
        check_name(name)
        if name in self.children:
            raise ComposefsFormatError(f"duplicate entry {name!r}")
        self.children[name] = child

    def set_xattr(self, name: bytes, value: bytes) -> None:
        """Set an xattr with mkcomposefs's size limits (replacing an earlier value)."""
        self.budget.set(self.xattrs, name, value)


def check_name(name: bytes) -> None:
    """Reject names the kernel and composefs refuse."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ComposefsFormatError(f"invalid file name length {len(name)}: {name[:40]!r}")
    if name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise ComposefsFormatError(f"invalid file name {name!r}")


def iter_nodes(root: Node) -> Iterator[tuple[bytes, Node]]:
    """Depth-first (path, entry) pairs in sorted name order, starting with the root as ``/``.

    Hardlink entries are yielded too (with ``link_to`` set); their targets are not descended.
    """
    yield b"/", root
    yield from _iter_children(b"", root)


def _iter_children(path: bytes, node: Node) -> Iterator[tuple[bytes, Node]]:
    # Iterative (a stack of sorted child lists), so that deep trees need no deep recursion.
    stack = [(path, iter(sorted(node.children.items())))]
    while stack:
        base, it = stack[-1]
        item = next(it, None)
        if item is None:
            stack.pop()
            continue
        name, child = item
        cpath = base + b"/" + name
        yield cpath, child
        if child.link_to is None and child.is_dir:
            stack.append((cpath, iter(sorted(child.children.items()))))


# --- escaping ----------------------------------------------------------------------------------

_ESCAPE_RE = re.compile(rb"\\(.?)")
_HEX = b"0123456789abcdefABCDEF"


def unescape(field_: bytes) -> bytes:
    """Undo the dump escapes (``\\\\ \\n \\r \\t \\xHH``)."""
    if b"\\" not in field_:
        return field_
    out = bytearray()
    i, n = 0, len(field_)
    while i < n:
        j = field_.find(b"\\", i)
        if j < 0:
            out += field_[i:]
            break
        out += field_[i:j]
        if j + 1 >= n:
            raise ComposefsFormatError("no character after escape")
        c = field_[j + 1]
        if c == 0x5C:
            out.append(0x5C)
        elif c == 0x6E:
            out.append(0x0A)
        elif c == 0x72:
            out.append(0x0D)
        elif c == 0x74:
            out.append(0x09)
        elif c == 0x78:
            h = field_[j + 2 : j + 4]
            if len(h) < 2:
                raise ComposefsFormatError("no hex characters after hex escape")
            if h[0] not in _HEX or h[1] not in _HEX:
                raise ComposefsFormatError(f"invalid hex escape {h!r}")
            out.append(int(h, 16))
            i = j + 4
            continue
        else:
            raise ComposefsFormatError(f"unsupported escape \\{chr(c)}")
        i = j + 2
    return bytes(out)


def _optional(field_: bytes) -> bytes | None:
    return None if field_ == b"-" else unescape(field_)


def _escape(value: bytes, *, equal: bool = False, space_ok: bool = False, lone_dash: bool = False) -> bytes:
    if lone_dash and value == b"-":
        return b"\\x2d"
    out = bytearray()
    for c in value:
        if c == 0x5C:
            out += b"\\\\"
        elif c == 0x0A:
            out += b"\\n"
        elif c == 0x0D:
            out += b"\\r"
        elif c == 0x09:
            out += b"\\t"
        elif (c == 0x3D and equal) or not (0x21 <= c <= 0x7E or (space_ok and c == 0x20)):
            out += b"\\x%02x" % c
        else:
            out.append(c)
    return bytes(out)


# --- parsing -----------------------------------------------------------------------------------


def _int(field_: bytes, name: str, base: int = 10) -> int:
    try:
        if not field_ or field_.strip() != field_ or field_.startswith((b"+", b"-")):
            raise ValueError
        return int(field_, base)
    except ValueError:
        raise ComposefsFormatError(f"invalid integer {field_[:30]!r} in {name}") from None


def _split_path(path: bytes) -> list[bytes]:
    parts = [p for p in path.split(b"/") if p]
    if path.endswith(b"/") and parts:
        raise ComposefsFormatError(f"invalid empty name in path {path!r}")
    return parts


def parse_dump(data: bytes, *, strict: bool = False) -> Node:
    """Parse a ``composefs-dump(5)`` file into a tree; returns the root.

    ``strict`` adds mkcomposefs's ``CFS_PARSE_STRICT`` checks (symlink SIZE equals the target
    length, RDEV zero for non-devices).

    Raises:
        ComposefsFormatError: on any malformed line, with its line number.
    """
    root: Node | None = None
    fixups: list[tuple[Node, bytes | None, int]] = []
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        try:
            root = _parse_line(line, lineno, root, fixups, strict)
        except ComposefsFormatError as e:
            raise ComposefsFormatError(f"dump line {lineno}: {e.message}") from None
    if root is None:
        raise ComposefsFormatError("dump has no root directory")
    for node, target_path, lineno in reversed(fixups):
        if target_path is None:
            raise ComposefsFormatError(f"dump line {lineno}: no target path for the hardlink")
        target = _lookup(root, target_path)
        if target is None:
            raise ComposefsFormatError(f"dump line {lineno}: no target at {target_path!r} for hardlink")
        if target is node:
            raise ComposefsFormatError(f"dump line {lineno}: self-referential hardlink {target_path!r}")
        node.link_to = target
    for _path, node in _iter_children(b"", root):
        if node.link_to is not None and (node.target().is_dir or node.is_dir):
            raise ComposefsFormatError("directories cannot be hardlinked")
    return root


def _lookup(root: Node, path: bytes) -> Node | None:
    node = root
    for part in (p for p in path.split(b"/") if p):
        child = node.children.get(part)
        if child is None:
            return None
        node = child
    return node


def _parse_line(
    line: bytes, lineno: int, root: Node | None, fixups: list[tuple[Node, bytes | None, int]], strict: bool
) -> Node | None:
    if b"\0" in line:
        raise ComposefsFormatError(f"invalid embedded NUL character at position {line.index(0)}")
    fields = line.split(b" ", 11)
    while len(fields) < 11:
        fields.append(b"")
    xattr_part = fields[11] if len(fields) > 11 else b""
    path = unescape(fields[0])
    if not path:
        raise ComposefsFormatError("invalid empty path")
    mode_f = fields[2]
    is_hardlink = mode_f.startswith(b"@")
    # Like mkcomposefs: a 32-bit mode whose type bits must be valid; the image keeps 16 bits.
    mode = _int(mode_f[1:] if is_hardlink else mode_f, "MODE", 8) & 0xFFFFFFFF
    if stat.S_IFMT(mode) not in _VALID_TYPES:
        raise ComposefsFormatError(f"invalid mode {mode:o}")
    node = Node(mode=mode)

    parts = _split_path(path)
    if not parts:
        if path != b"/":
            raise ComposefsFormatError(f"invalid empty name in path {path!r}")
        if not node.is_dir:
            raise ComposefsFormatError("root must be a directory")
        if root is not None:
            raise ComposefsFormatError("can't have multiple roots")
        root = node
    else:
        if root is None:
            raise ComposefsFormatError("root node not present")
        parent = root
        for part in parts[:-1]:
            nxt = parent.children.get(part)
            if nxt is None:
                raise ComposefsFormatError(f"parent directory missing for {path!r}")
            parent = nxt
        if not parent.is_dir or parent.link_to is not None:
            raise ComposefsFormatError(f"parent must be a directory for {path!r}")
        parent.add_child(parts[-1], node)

    if is_hardlink:
        if node.is_dir:
            raise ComposefsFormatError("directories can't be hardlinked")
        fixups.append((node, _optional(fields[8]), lineno))
        return root

    size = _int(fields[1], "SIZE")
    node.nlink = _int(fields[3], "NLINK")
    node.uid = _int(fields[4], "UID")
    node.gid = _int(fields[5], "GID")
    rdev = _int(fields[6], "RDEV")
    sec, _dot, nsec = fields[7].partition(b".")
    node.mtime_sec = _int(sec, "MTIME")
    node.mtime_nsec = _int(nsec, "MTIME")
    if node.uid > 0xFFFFFFFF or node.gid > 0xFFFFFFFF or node.nlink > 0xFFFFFFFF:
        raise ComposefsFormatError("uid, gid or nlink out of range")
    payload = _optional(fields[8])
    content = _optional(fields[9])
    digest = _optional(fields[10])
    if content is not None and len(content) != size:
        raise ComposefsFormatError(f"invalid content size {len(content)}, must match size {size}")
    ftype = stat.S_IFMT(mode)
    node.size = size
    if ftype in (stat.S_IFCHR, stat.S_IFBLK):
        node.rdev = rdev
    elif strict and rdev != 0:
        raise ComposefsFormatError("non-zero devnum on non-device")
    if payload is not None and b"\0" in payload:
        payload = payload[: payload.index(b"\0")]
    if ftype == stat.S_IFLNK:
        if not payload:
            raise ComposefsFormatError("invalid symlink: empty target")
        if len(payload) > MAX_PAYLOAD_LENGTH:
            raise ComposefsFormatError("symlink target too long")
        if strict and (size != len(payload) or content):
            raise ComposefsFormatError("symlink size must match its target and it cannot have content")
        node.payload = payload
        node.size = len(payload)
    else:
        if payload is not None and len(payload) > MAX_PAYLOAD_LENGTH:
            raise ComposefsFormatError("payload too long")
        node.payload = payload
        if content:
            if len(content) > INLINE_CONTENT_MAX:
                raise ComposefsFormatError(
                    f"inline content size {len(content)} exceeds maximum {INLINE_CONTENT_MAX}"
                )
            node.content = content
    if digest is not None:
        try:
            raw = bytes.fromhex(digest.decode("ascii"))
        except ValueError:
            raise ComposefsFormatError(f"invalid digest {digest[:70]!r}") from None
        if len(raw) != 32:
            raise ComposefsFormatError(f"invalid digest length {len(raw)}")
        node.digest = raw
    if len(line) > 0xFFFF:
        raise ComposefsFormatError("too many xattrs")
    if xattr_part:
        for item in xattr_part.split(b" "):
            name, eq, value = item.partition(b"=")
            if not eq:
                raise ComposefsFormatError("missing = in xattr")
            key = unescape(name)
            if b"\0" in key:
                key = key[: key.index(b"\0")]
            node.set_xattr(key, unescape(value))
    return root


# --- writing -----------------------------------------------------------------------------------


def format_dump(root: Node) -> bytes:
    """Serialize a tree in ``composefs-dump(5)`` form, as ``composefs-info dump`` prints it.

    Hardlinks print ``@MODE`` and the path of the first entry naming the inode.
    """
    lines: list[bytes] = []
    first_path: dict[int, bytes] = {}
    entries = [(b"/", root), *_iter_children(b"", root)]
    for path, node in entries:
        if node.link_to is None:
            first_path[id(node)] = path
    for path, node in entries:
        target = node.target() if node.link_to is not None else node
        link_path = first_path.get(id(target)) if node.link_to is not None else None
        if node.link_to is not None and link_path is None:
            raise ComposefsFormatError(f"hardlink {path!r} to an inode outside the tree")
        shown_payload = link_path if link_path is not None else target.payload
        parts = [
            _escape(path),
            b"%d" % target.size,
            (b"@" if link_path is not None else b"") + b"%o" % target.mode,
            b"%d" % target.nlink,
            b"%d" % target.uid,
            b"%d" % target.gid,
            b"%d" % target.rdev,
            b"%d.%d" % (target.mtime_sec, target.mtime_nsec),
            b"-" if shown_payload is None else _escape(shown_payload, lone_dash=True),
            b"-" if target.content is None else _escape(target.content, lone_dash=True),
            b"-" if target.digest is None else target.digest.hex().encode(),
        ]
        for name in sorted(target.xattrs):
            parts.append(_escape(name, equal=True) + b"=" + _escape(target.xattrs[name], equal=True))
        lines.append(b" ".join(parts))
    return b"\n".join(lines) + b"\n"
