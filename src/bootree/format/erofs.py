"""EROFS on-disk structures and the composefs image layout (byte-identical to ``mkcomposefs``).

Layer: format (pure). A composefs image is an uncompressed EROFS file system that holds only
metadata: names, modes, xattrs, symlinks and small inline files; every other regular file is a
sparse stub whose overlayfs xattrs (``trusted.overlay.redirect`` and ``.metacopy``) point at the
backing object and carry its fs-verity digest. The image's own fs-verity digest then pins the
whole tree, so the image must be *canonical*: the same tree always gives the same bytes. The
rules below are mkcomposefs's (libcomposefs ``lcfs-writer-erofs.c``), reproduced exactly and
checked against the upstream golden images (tests/unit/format/test_erofs_golden.py):

1. rewrite the tree (:mod:`bootree.format.erofs_tree`): escape ``trusted.overlay.*`` xattrs one
   level, add the stub xattrs, turn whiteouts (char 0/0) into regular files with escaped
   whiteout markers, add ``.``/``..``, mark the root opaque and add 256 stub whiteouts
   ``00``..``ff`` to hide the object fan-out;
2. lay inodes out breadth-first (children sorted by bytes), each 32-byte aligned, compact unless
   mtime differs from the minimum or a field does not fit, with inline tails that never cross a
   4 KiB block;
3. share every (xattr, value) pair used by more than one inode, in a table sorted descending;
4. write header, superblock, inodes, shared xattrs, then data blocks in inode order.

See shared/reference/composefs-erofs.md §1.4–§1.5 and §2 for the byte layout.
"""

from __future__ import annotations

import stat
import struct
from functools import lru_cache

from bootree.errors import ComposefsFormatError
from bootree.format.composefs_dump import Node
from bootree.format.erofs_tree import (
    BLOCK_BITS,
    ESC_OPAQUE,
    ESC_WHITEOUT,
    ESC_WHITEOUTS,
    MAX_CHUNKS,
    METACOPY,
    OPAQUE,
    REDIRECT,
    USER_OPAQUE,
    USER_WHITEOUT,
    USER_WHITEOUTS,
    Inode,
    WriteOptions,
    chunking,
    rewrite_tree,
)
from bootree.format.xxh32 import xxh32

__all__ = [
    "BLOCK_SIZE",
    "COMPOSEFS_MAGIC",
    "EROFS_MAGIC",
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
    "WriteOptions",
    "write_image",
    "xattr_index",
    "xxh32",
]

BLOCK_SIZE = 4096
SLOT = 32
SUPER_OFFSET = 1024
EROFS_MAGIC = 0xE0F5E1E2
COMPOSEFS_MAGIC = 0xD078629A
COMPOSEFS_HEADER_VERSION = 1
COMPOSEFS_FLAG_HAS_ACL = 1
FEATURE_COMPAT_MTIME = 0x2
FEATURE_COMPAT_XATTR_FILTER = 0x4
NULL_ADDR = 0xFFFFFFFF
MAX_SHARED_PER_INODE = 128
XATTR_FILTER_SEED = 0x25BBE08F

LAYOUT_FLAT_PLAIN = 0
LAYOUT_FLAT_INLINE = 2
LAYOUT_CHUNK_BASED = 4

FT = {
    stat.S_IFREG: 1,
    stat.S_IFDIR: 2,
    stat.S_IFCHR: 3,
    stat.S_IFBLK: 4,
    stat.S_IFIFO: 5,
    stat.S_IFSOCK: 6,
    stat.S_IFLNK: 7,
}

_XATTR_PREFIXES = (
    (b"user.", 1),
    (b"system.posix_acl_access", 2),
    (b"system.posix_acl_default", 3),
    (b"trusted.", 4),
    (b"security.", 6),
)
INDEX_PREFIX = {
    1: b"user.",
    2: b"system.posix_acl_access",
    3: b"system.posix_acl_default",
    4: b"trusted.",
    5: b"lustre.",
    6: b"security.",
}

SUPERBLOCK = struct.Struct("<IIIBBHQQIIII16s16sIHHHBBIQB23x")
COMPACT = struct.Struct("<HHHHIIIIHHI")
EXTENDED = struct.Struct("<HHHHQIIIIQII16x")
HEADER = struct.Struct("<IIII16x")
XATTR_IBODY = struct.Struct("<IB7x")
XATTR_ENTRY = struct.Struct("<BBH")
DIRENT = struct.Struct("<QHBx")


@lru_cache(maxsize=8192)
def xattr_index(name: bytes) -> tuple[int, bytes]:
    """The EROFS name index and suffix of a full xattr name (0 and the whole name if no prefix)."""
    for prefix, index in _XATTR_PREFIXES:
        if name.startswith(prefix):
            return index, name[len(prefix) :]
    return 0, name


@lru_cache(maxsize=8192)
def _filter_bit(name: bytes) -> int:
    index, suffix = xattr_index(name)
    return 1 << (xxh32(suffix, XATTR_FILTER_SEED + index) & 31)


def _entry_size(name: bytes, value: bytes) -> int:
    return (4 + len(xattr_index(name)[1]) + len(value) + 3) & ~3


# --- layout ------------------------------------------------------------------------------------


def _dir_chunks(entries: list[tuple[bytes, Inode, bool]]) -> list[tuple[int, int]]:
    """Split directory entries into dirent blocks: (first index, end index) per block."""
    chunks = []
    first, used = 0, 0
    for i, (name, _child, _real) in enumerate(entries):
        n = 12 + len(name)
        if used + n > BLOCK_SIZE:
            chunks.append((first, i))
            first, used = i, 0
        used += n
    chunks.append((first, len(entries)))
    return chunks


def _dirent_block(entries: list[tuple[bytes, Inode, bool]], lo: int, hi: int) -> bytes:
    nameoff = 12 * (hi - lo)
    heads = []
    names = []
    for name, child, _real in entries[lo:hi]:
        heads.append(DIRENT.pack(child.nid, nameoff, FT[stat.S_IFMT(child.mode)]))
        names.append(name)
        nameoff += len(name)
    return b"".join(heads) + b"".join(names)


def write_image(root: Node, options: WriteOptions | None = None) -> bytes:
    """The composefs EROFS image of the tree under ``root``.

    Raises:
        ComposefsFormatError: if the tree cannot be represented (file too large, hardlinked
            directory, xattrs over the limits).
    """
    options = options or WriteOptions()
    order, version = rewrite_tree(root, options)

    min_mtime = order[0].mtime
    has_acl = False
    counts: dict[tuple[bytes, bytes], int] = {}
    for ino in order:
        if ino.mtime < min_mtime:
            min_mtime = ino.mtime
        xs = ino.xattrs
        if xs:
            if len(xs) > 1:
                ino.xattrs = xs = dict(sorted(xs.items()))
            if b"system.posix_acl_access" in xs or b"system.posix_acl_default" in xs:
                has_acl = True
            for item in xs.items():
                counts[item] = counts.get(item, 0) + 1

    shared_items = sorted(
        (item for item, n in counts.items() if n > 1), key=lambda it: (it[0], len(it[1]), it[1]), reverse=True
    )
    shared_offset: dict[tuple[bytes, bytes], int] = {}
    off = 0
    for item in shared_items:
        shared_offset[item] = off
        off += _entry_size(*item)
    shared_size = off

    # Inode sizes and placement (§1.5).
    pos = SUPER_OFFSET + SUPERBLOCK.size
    n_data_blocks = 0
    for ino in order:
        ftype = stat.S_IFMT(ino.mode)
        ino.n_blocks = 0
        ino.tail = 0
        if ftype == stat.S_IFDIR:
            chunks = _dir_chunks(ino.entries)
            last_lo, last_hi = chunks[-1]
            last = sum(12 + len(e[0]) for e in ino.entries[last_lo:last_hi])
            ino.n_blocks = len(chunks) - 1
            if last > BLOCK_SIZE // 2:
                ino.n_blocks += 1
            else:
                ino.tail = last
            size = ino.n_blocks * BLOCK_SIZE + ino.tail
        elif ftype == stat.S_IFLNK:
            assert ino.payload is not None
            ino.tail = len(ino.payload)
            size = ino.size
        elif ftype == stat.S_IFREG and ino.size > 0:
            size = ino.size
            if ino.content is not None:
                ino.n_blocks, ino.tail = divmod(size, BLOCK_SIZE)
                if ino.tail > BLOCK_SIZE // 2:
                    ino.n_blocks += 1
                    ino.tail = 0
            else:
                ino.tail = 4 * chunking(size)[1]
        else:
            size = ino.size
        ino.compact = (
            ino.mtime == min_mtime
            and ino.nlink <= 0xFFFF
            and ino.uid <= 0xFFFF
            and ino.gid <= 0xFFFF
            and size <= 0xFFFFFFFF
        )
        isize = 32 if ino.compact else 64
        n_shared = 0
        unshared = 0
        shared: list[int] = []
        inline: list[tuple[bytes, bytes]] = []
        for item in ino.xattrs.items():
            o = shared_offset.get(item)
            if o is not None and n_shared < MAX_SHARED_PER_INODE:
                n_shared += 1
                shared.append(o)
            else:
                unshared += _entry_size(*item)
                inline.append(item)
        ino.shared = shared
        ino.inline = inline
        xsize = ((12 + 4 * n_shared + unshared + 3) & ~3) if ino.xattrs else 0
        ino.xsize = xsize
        ppos = pos
        pos = (pos + SLOT - 1) & ~(SLOT - 1)
        # Keep the inline tail inside one block.
        if ftype == stat.S_IFLNK:
            total = isize + xsize + ino.tail
            if total // BLOCK_SIZE > 0:
                ino.n_blocks += 1
                ino.tail = 0
            if pos // BLOCK_SIZE != (pos + total - 1) // BLOCK_SIZE:
                pos = -(-pos // BLOCK_SIZE) * BLOCK_SIZE
        else:
            rem = BLOCK_SIZE - ((pos + isize + xsize) % BLOCK_SIZE)
            if rem < ino.tail:
                pad = (rem + SLOT - 1) & ~(SLOT - 1)
                rem = BLOCK_SIZE - ((pos + isize + xsize + pad) % BLOCK_SIZE)
                if ino.tail <= rem:
                    pos += pad
                else:
                    ino.n_blocks += 1
                    ino.tail = 0
                    pos = -(-pos // BLOCK_SIZE) * BLOCK_SIZE
        ino.ipad = pos - ppos
        ino.isize = isize + xsize + ino.tail
        ino.nid = pos // SLOT
        n_data_blocks += ino.n_blocks
        pos += ino.isize
    inodes_end = (pos + SLOT - 1) & ~(SLOT - 1)
    data_start = -(-(inodes_end + shared_size) // BLOCK_SIZE) * BLOCK_SIZE
    total_blocks = data_start // BLOCK_SIZE + n_data_blocks
    root_nid = order[0].nid
    if root_nid > 0xFFFF:
        raise ComposefsFormatError("root inode beyond the 16-bit nid range")

    out = bytearray()
    out += HEADER.pack(
        COMPOSEFS_MAGIC, COMPOSEFS_HEADER_VERSION, COMPOSEFS_FLAG_HAS_ACL if has_acl else 0, version
    )
    out += bytes(SUPER_OFFSET - len(out))
    out += SUPERBLOCK.pack(
        EROFS_MAGIC, 0, FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER, BLOCK_BITS, 0, root_nid, len(order),
        min_mtime[0], min_mtime[1], total_blocks, 0, inodes_end // BLOCK_SIZE, bytes(16), bytes(16),
        0, 0, 0, 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    shared_base = inodes_end % BLOCK_SIZE
    next_block = data_start // BLOCK_SIZE
    data_blocks: list[bytes] = []
    for ino in order:
        if ino.ipad:
            out += bytes(ino.ipad)
        ftype = stat.S_IFMT(ino.mode)
        layout = LAYOUT_FLAT_INLINE if ino.tail > 0 else LAYOUT_FLAT_PLAIN
        i_u = 0
        if ftype == stat.S_IFDIR:
            size = ino.n_blocks * BLOCK_SIZE + ino.tail
        elif ftype == stat.S_IFREG:
            size = ino.size
        elif ftype == stat.S_IFLNK:
            size = ino.tail if ino.n_blocks == 0 else ino.size
        else:
            size = 0
        if ftype in (stat.S_IFCHR, stat.S_IFBLK):
            i_u = ino.rdev & 0xFFFFFFFF
        elif ino.n_blocks > 0 and ftype in (stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK):
            i_u = next_block
            next_block += ino.n_blocks
        chunk_count = 0
        if ftype == stat.S_IFREG and ino.size > 0 and ino.content is None:
            bits, chunk_count = chunking(ino.size)
            layout = LAYOUT_CHUNK_BASED
            i_u = (i_u & 0xFFFF0000) | (bits - BLOCK_BITS)
        xsize = ino.xsize
        icount = (xsize - 12) // 4 + 1 if xsize else 0
        if icount > 0xFFFF:
            raise ComposefsFormatError("too many xattrs on one inode")
        if ino.compact:
            out += COMPACT.pack(
                layout << 1,
                icount,
                ino.mode & 0xFFFF,
                ino.nlink,
                size,
                0,
                i_u,
                ino.index,
                ino.uid,
                ino.gid,
                0,
            )
        else:
            out += EXTENDED.pack(
                (layout << 1) | 1, icount, ino.mode & 0xFFFF, 0, size, i_u, ino.index, ino.uid, ino.gid,
                ino.mtime[0], ino.mtime[1], ino.nlink,
            )  # fmt: skip
        if xsize:
            filt = 0
            for name in ino.xattrs:
                filt |= _filter_bit(name)
            start = len(out)
            out += XATTR_IBODY.pack(~filt & 0xFFFFFFFF, len(ino.shared))
            for o in ino.shared:
                out += struct.pack("<I", (shared_base + o) // 4)
            for item in ino.inline:
                _put_xattr(out, *item)
            out += bytes(xsize - (len(out) - start))
        if ftype == stat.S_IFDIR:
            chunks = _dir_chunks(ino.entries)
            if ino.n_blocks == len(chunks) - 1:
                full, tail = chunks[:-1], chunks[-1]
            else:
                full, tail = chunks, None
            for lo, hi in full:
                block = _dirent_block(ino.entries, lo, hi)
                data_blocks.append(block + bytes(BLOCK_SIZE - len(block)))
            if tail is not None:
                out += _dirent_block(ino.entries, *tail)
        elif ftype == stat.S_IFLNK:
            assert ino.payload is not None
            if ino.n_blocks == 0:
                out += ino.payload
            else:
                data_blocks.append(ino.payload + bytes(BLOCK_SIZE - len(ino.payload)))
        elif ftype == stat.S_IFREG and (ino.tail or ino.n_blocks):
            if ino.content is not None:
                content = ino.content
                full_len = ino.n_blocks * BLOCK_SIZE
                for b in range(ino.n_blocks):
                    block = content[b * BLOCK_SIZE : (b + 1) * BLOCK_SIZE]
                    data_blocks.append(block + bytes(BLOCK_SIZE - len(block)))
                if ino.tail:
                    out += content[full_len:]
            elif ino.n_blocks:
                data_blocks.append(b"\xff" * BLOCK_SIZE)
            else:
                out += b"\xff" * (4 * chunk_count)
    out += bytes(inodes_end - len(out))
    for item in shared_items:
        _put_xattr(out, *item)
    out += bytes(data_start - len(out))
    for block in data_blocks:
        out += block
    if len(out) != total_blocks * BLOCK_SIZE:
        raise AssertionError(f"composefs writer: size {len(out)} != {total_blocks} blocks")
    return bytes(out)


def _put_xattr(out: bytearray, name: bytes, value: bytes) -> None:
    index, suffix = xattr_index(name)
    start = len(out)
    out += XATTR_ENTRY.pack(len(suffix), index, len(value))
    out += suffix
    out += value
    out += bytes(-(len(out) - start) % 4)
