"""Reading composefs EROFS images back into a tree (``composefs info``/``dump``, fsck, tests).

Layer: format (pure). The reader undoes what :mod:`bootree.format.erofs` writes, the way
``composefs-info dump`` does: a stub's ``trusted.overlay.redirect`` becomes its payload and its
``metacopy`` its fs-verity digest, escaped ``trusted.overlay.overlay.X`` xattrs become
``trusted.overlay.X`` again, whiteout markers turn back into char 0/0 devices, and the 256
fan-out whiteouts in the root and the other internal overlay xattrs are dropped. So
``write_image(read_image(img).root) == img`` for any image bootree or mkcomposefs wrote, which
the tests check. Every offset read is bounds-checked: a corrupt image raises
:class:`ComposefsFormatError`, never IndexError.
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass

from bootree.errors import ComposefsFormatError
from bootree.format.composefs_dump import Node
from bootree.format.erofs import (
    BLOCK_SIZE,
    COMPACT,
    COMPOSEFS_MAGIC,
    DIRENT,
    EROFS_MAGIC,
    ESC_OPAQUE,
    ESC_WHITEOUT,
    ESC_WHITEOUTS,
    EXTENDED,
    HEADER,
    INDEX_PREFIX,
    LAYOUT_CHUNK_BASED,
    LAYOUT_FLAT_INLINE,
    LAYOUT_FLAT_PLAIN,
    METACOPY,
    REDIRECT,
    SUPER_OFFSET,
    SUPERBLOCK,
    USER_OPAQUE,
    USER_WHITEOUT,
    USER_WHITEOUTS,
    XATTR_ENTRY,
    XATTR_IBODY,
)

__all__ = ["Image", "ImageInfo", "read_image", "read_info"]

_OVL = b"trusted.overlay."
_OVL_ESC = b"trusted.overlay.overlay."
_SKIP = frozenset({ESC_WHITEOUTS, USER_WHITEOUT, USER_WHITEOUTS})


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """The composefs header and EROFS superblock fields of an image."""

    composefs_version: int
    flags: int
    feature_compat: int
    feature_incompat: int
    block_size: int
    root_nid: int
    inodes: int
    blocks: int
    build_time: int
    build_time_nsec: int
    meta_blkaddr: int
    xattr_blkaddr: int


@dataclass(frozen=True, slots=True)
class Image:
    """A decoded image: its :class:`ImageInfo` and the composefs tree it holds."""

    info: ImageInfo
    root: Node


def read_info(data: bytes) -> ImageInfo:
    """Decode and check the header and superblock.

    Raises:
        ComposefsFormatError: if the magic numbers, block size or size do not fit.
    """
    if len(data) < SUPER_OFFSET + SUPERBLOCK.size:
        raise ComposefsFormatError(f"image too small ({len(data)} bytes)")
    magic, hversion, flags, cfs_version = HEADER.unpack_from(data, 0)
    if magic != COMPOSEFS_MAGIC:
        raise ComposefsFormatError(f"not a composefs image (header magic {magic:#x})")
    if hversion != 1:
        raise ComposefsFormatError(f"unsupported composefs header version {hversion}")
    sb = SUPERBLOCK.unpack_from(data, SUPER_OFFSET)
    if sb[0] != EROFS_MAGIC:
        raise ComposefsFormatError(f"no EROFS superblock (magic {sb[0]:#x})")
    if sb[3] != 12:
        raise ComposefsFormatError(f"unsupported EROFS block size 2^{sb[3]}")
    if sb[14] != 0:
        raise ComposefsFormatError(f"unsupported EROFS incompat features {sb[14]:#x}")
    return ImageInfo(
        composefs_version=cfs_version,
        flags=flags,
        feature_compat=sb[2],
        feature_incompat=sb[14],
        block_size=1 << sb[3],
        root_nid=sb[5],
        inodes=sb[6],
        blocks=sb[9],
        build_time=sb[7],
        build_time_nsec=sb[8],
        meta_blkaddr=sb[10],
        xattr_blkaddr=sb[11],
    )


class _Reader:
    def __init__(self, data: bytes, info: ImageInfo) -> None:
        self.data = data
        self.info = info
        self.seen: dict[int, Node] = {}
        self.real_whiteouts: set[int] = set()  # char 0/0 in the image itself, not escaped ones

    def _slice(self, off: int, n: int) -> bytes:
        if off < 0 or n < 0 or off + n > len(self.data):
            raise ComposefsFormatError(f"image truncated: {n} bytes at {off} beyond {len(self.data)}")
        return self.data[off : off + n]

    def _xattr_entry(self, off: int, end: int) -> tuple[bytes, bytes, int]:
        if off + 4 > end:
            raise ComposefsFormatError(f"xattr entry at {off} runs past its area")
        name_len, index, value_len = XATTR_ENTRY.unpack_from(self.data, off)
        prefix = INDEX_PREFIX.get(index)
        if prefix is None and index != 0:
            raise ComposefsFormatError(f"unsupported xattr name index {index}")
        body = self._slice(off + 4, name_len + value_len)
        if off + 4 + name_len + value_len > end:
            raise ComposefsFormatError(f"xattr entry at {off} runs past its area")
        name = (prefix or b"") + body[:name_len]
        return name, body[name_len:], off + ((4 + name_len + value_len + 3) & ~3)

    def node(self, nid: int) -> tuple[Node, bool]:
        """The node at ``nid`` and whether it was already seen (a hardlink)."""
        existing = self.seen.get(nid)
        if existing is not None:
            return Node(mode=existing.mode, link_to=existing), True
        info = self.info
        off = info.meta_blkaddr * BLOCK_SIZE + nid * 32
        head = self._slice(off, 32)
        i_format = struct.unpack_from("<H", head)[0]
        if i_format & 1:
            (_f, icount, mode, _r, size, i_u, _ino, uid, gid, msec, mnsec, nlink) = EXTENDED.unpack(
                self._slice(off, 64)
            )
            isize = 64
        else:
            (_f, icount, mode, nlink, size, _m, i_u, _ino, uid, gid, _r2) = COMPACT.unpack(head)
            msec, mnsec = info.build_time, info.build_time_nsec
            isize = 32
        layout = (i_format >> 1) & 7
        node = Node(mode=mode, uid=uid, gid=gid, nlink=nlink, size=size, mtime_sec=msec, mtime_nsec=mnsec)
        self.seen[nid] = node
        ftype = stat.S_IFMT(mode)
        if ftype in (stat.S_IFCHR, stat.S_IFBLK):
            node.rdev = i_u
            if ftype == stat.S_IFCHR and i_u == 0:
                self.real_whiteouts.add(nid)
        xstart = off + isize
        xsize = 12 + 4 * (icount - 1) if icount else 0
        xend = xstart + xsize
        if xsize:
            self._slice(xstart, xsize)
            _filter, n_shared = XATTR_IBODY.unpack_from(self.data, xstart)
            pos = xstart + 12
            raw: list[tuple[bytes, bytes]] = []
            for k in range(n_shared):
                (sid,) = struct.unpack_from("<I", self.data, pos + 4 * k)
                soff = info.xattr_blkaddr * BLOCK_SIZE + sid * 4
                name, value, _ = self._xattr_entry(soff, len(self.data))
                raw.append((name, value))
            pos += 4 * n_shared
            while pos < xend:
                name, value, pos = self._xattr_entry(pos, xend)
                raw.append((name, value))
            # A directory holding whiteouts carries markers the writer adds by itself: drop them.
            marked = any(name == ESC_WHITEOUTS for name, _ in raw)
            for name, value in raw:
                if marked and name in (ESC_OPAQUE, USER_OPAQUE) and value == b"x":
                    continue
                self._apply_xattr(node, name, value)
        tail_off = xend
        if ftype == stat.S_IFREG and layout == LAYOUT_CHUNK_BASED:
            return node, False  # an external stub: size, payload and digest are all there is
        if layout not in (LAYOUT_FLAT_PLAIN, LAYOUT_FLAT_INLINE):
            raise ComposefsFormatError(f"unsupported data layout {layout} at nid {nid}")
        data = b""
        if ftype in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK) and size:
            if layout == LAYOUT_FLAT_PLAIN:
                data = self._slice(i_u * BLOCK_SIZE, size)
            else:
                n_full = size // BLOCK_SIZE
                data = self._slice(i_u * BLOCK_SIZE, n_full * BLOCK_SIZE) + self._slice(
                    tail_off, size - n_full * BLOCK_SIZE
                )
        if ftype == stat.S_IFLNK:
            node.payload = data
        elif ftype == stat.S_IFREG and size and not node.payload:
            node.content = data
        elif ftype == stat.S_IFDIR:
            self._dir(node, nid, data)
        return node, False

    def _apply_xattr(self, node: Node, name: bytes, value: bytes) -> None:
        is_reg = stat.S_ISREG(node.mode)
        if name == REDIRECT:
            if is_reg:
                node.payload = value[1:] if len(value) > 1 and value.startswith(b"/") else value
            return
        if name == METACOPY:
            if is_reg and len(value) == 36:
                node.digest = value[4:]
            return
        if name == ESC_WHITEOUT and is_reg:
            node.mode = (node.mode & ~0o170000) | stat.S_IFCHR
            node.rdev = 0
            node.size = 0
            return
        if name in _SKIP:
            return
        if name.startswith(_OVL):
            if not name.startswith(_OVL_ESC):
                return
            name = _OVL + name[len(_OVL_ESC) :]
        node.xattrs[name] = value

    def _dir(self, node: Node, nid: int, data: bytes) -> None:
        for bstart in range(0, len(data), BLOCK_SIZE):
            block = data[bstart : bstart + BLOCK_SIZE]
            if len(block) < 12:
                raise ComposefsFormatError(f"directory block too short at nid {nid}")
            first_nameoff = DIRENT.unpack_from(block, 0)[1]
            count = first_nameoff // 12
            if count == 0 or first_nameoff % 12 or first_nameoff > len(block):
                raise ComposefsFormatError(f"corrupt directory block at nid {nid}")
            ents = [DIRENT.unpack_from(block, 12 * i) for i in range(count)]
            for i, (cnid, nameoff, _ftype) in enumerate(ents):
                end = ents[i + 1][1] if i + 1 < count else len(block)
                name = block[nameoff:end]
                if i + 1 == count:
                    name = name.split(b"\0", 1)[0]
                if not name or end < nameoff:
                    raise ComposefsFormatError(f"corrupt directory entry at nid {nid}")
                if name in (b".", b".."):
                    continue
                child, _link = self.node(cnid)
                if nid == self.info.root_nid and cnid in self.real_whiteouts and child.link_to is None:
                    continue  # one of the 256 object fan-out whiteouts
                if name in node.children:
                    raise ComposefsFormatError(f"duplicate directory entry {name!r} at nid {nid}")
                node.children[name] = child


def read_image(data: bytes) -> Image:
    """Decode a composefs image into its tree.

    Raises:
        ComposefsFormatError: if the image is not a composefs EROFS image or is corrupt.
    """
    info = read_info(data)
    reader = _Reader(data, info)
    try:
        root, _ = reader.node(info.root_nid)
    except RecursionError:
        raise ComposefsFormatError("directory tree too deep (or a directory loop)") from None
    if not root.is_dir:
        raise ComposefsFormatError("the image root is not a directory")
    return Image(info=info, root=root)
