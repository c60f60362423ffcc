"""ostree's object model: commit, dirtree, dirmeta and file headers, to and from bytes.

Layer: format. Every value is a frozen dataclass that serializes to exactly the bytes libostree
writes, because the SHA-256 of those bytes is the object's name. ostree stores its own integers
big-endian inside the little-endian GVariant framing (uid, gid, mode, timestamp), which is why the
codecs here byte-swap.

Validation happens in ``from_bytes`` (and in ``__post_init__`` for values built in code): entry
names that could escape a checkout (``..``, ``/``, NUL, empty) are rejected, arrays must be sorted
and free of duplicates, checksums must be 32 bytes.
"""

from __future__ import annotations

import hashlib
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import cast

from bootree.errors import FormatError, InvalidTreeEntry
from bootree.format import gvariant
from bootree.format.checksum import Checksum, ObjectType, from_raw, to_raw
from bootree.format.gvariant import Variant, container_offset_size, offset_size, vardict_get

__all__ = [
    "COMMIT_TYPE",
    "DIRMETA_TYPE",
    "DIRTREE_TYPE",
    "FILE_HEADER_TYPE",
    "Commit",
    "DirMeta",
    "DirTree",
    "FileHeader",
    "ObjectType",
    "Xattrs",
    "bswap32",
    "bswap64",
    "content_checksum",
    "dirtree_children",
    "validate_filename",
    "xattrs_from_bytes",
    "xattrs_to_bytes",
]

COMMIT_TYPE = "(a{sv}aya(say)sstayay)"
DIRTREE_TYPE = "(a(say)a(sayay))"
DIRMETA_TYPE = "(uuua(ayay))"
FILE_HEADER_TYPE = "(uuuusa(ayay))"
XATTRS_TYPE = "a(ayay)"

#: Extended attributes: ``(name, value)`` pairs, names without the trailing NUL, sorted by name.
Xattrs = tuple[tuple[bytes, bytes], ...]


def _bswap(v: int, size: int) -> int:
    try:
        return int.from_bytes(v.to_bytes(size, "little"), "big")
    except OverflowError:
        raise FormatError(f"value {v} does not fit an unsigned {size * 8}-bit field") from None


def bswap32(v: int) -> int:
    """Swap the byte order of a 32-bit value (ostree's big-endian fields).

    Raises:
        FormatError: for a value outside 0 … 2³²−1 (a negative uid, say).
    """
    return _bswap(v, 4)


def bswap64(v: int) -> int:
    """Swap the byte order of a 64-bit value (ostree's big-endian timestamps and sizes).

    Raises:
        FormatError: for a value outside 0 … 2⁶⁴−1 (a negative timestamp, say).
    """
    return _bswap(v, 8)


def validate_filename(name: str, where: str = "") -> None:
    """Reject a dirtree entry name that is empty, ``.``, ``..`` or contains ``/`` or NUL.

    Raises:
        InvalidTreeEntry: for such a name.
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise InvalidTreeEntry(name, where)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a file name from disk that is not UTF-8 (surrogate-escaped)
        raise InvalidTreeEntry(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), where) from None


def _xattrs_to_gv(xattrs: Xattrs) -> list[tuple[bytes, bytes]]:
    return [(name + b"\0", value) for name, value in xattrs]


def _xattrs_from_gv(raw: list[tuple[bytes, bytes]]) -> Xattrs:
    out = []
    for name, value in raw:
        if not name.endswith(b"\0") or b"\0" in name[:-1]:
            raise FormatError("xattr name is not a NUL-terminated string")
        out.append((name[:-1], value))
    return tuple(out)


def _check_xattrs(xattrs: Xattrs) -> None:
    names = [n for n, _ in xattrs]
    if names != sorted(names) or len(set(names)) != len(names):
        raise FormatError("xattrs are not sorted by name or contain duplicates")


def xattrs_to_bytes(xattrs: Xattrs) -> bytes:
    """An xattr set as the GVariant ``a(ayay)`` (names NUL-terminated): ostree-ext's ``.file-xattrs``."""
    _check_xattrs(xattrs)
    return gvariant.encode(XATTRS_TYPE, _xattrs_to_gv(xattrs))


def xattrs_from_bytes(data: bytes) -> Xattrs:
    """Parse an ``a(ayay)`` xattr set strictly (normal form, sorted, NUL-terminated names).

    Raises:
        FormatError: for malformed data.
    """
    xattrs = _xattrs_from_gv(cast("list[tuple[bytes, bytes]]", gvariant.decode(XATTRS_TYPE, data)))
    _check_xattrs(xattrs)
    return xattrs


def content_checksum(root_tree: Checksum, root_meta: Checksum) -> Checksum:
    """ostree's ContentChecksum of a commit: SHA-256 of the root dirtree and dirmeta digests."""
    return Checksum(hashlib.sha256(to_raw(root_tree) + to_raw(root_meta)).hexdigest())


@dataclass(frozen=True, slots=True)
class DirMeta:
    """A directory's ownership, mode (with ``S_IFDIR``) and xattrs."""

    uid: int
    gid: int
    mode: int
    xattrs: Xattrs = ()

    def __post_init__(self) -> None:
        if not stat.S_ISDIR(self.mode):
            raise FormatError(f"dirmeta mode {self.mode:o} is not a directory")
        _check_xattrs(self.xattrs)

    def to_bytes(self) -> bytes:
        """Serialize as ``(uuua(ayay))`` with big-endian integers."""
        return gvariant.encode(
            DIRMETA_TYPE, (bswap32(self.uid), bswap32(self.gid), bswap32(self.mode), _xattrs_to_gv(self.xattrs))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DirMeta:
        """Parse a dirmeta object.

        Raises:
            FormatError: for malformed or non-normal data.
        """
        uid, gid, mode, xattrs = cast("tuple[int, int, int, list[tuple[bytes, bytes]]]", gvariant.decode(DIRMETA_TYPE, data))
        return cls(bswap32(uid), bswap32(gid), bswap32(mode), _xattrs_from_gv(xattrs))


@dataclass(frozen=True, slots=True)
class DirTree:
    """A directory listing: files ``(name, content checksum)`` and subdirectories
    ``(name, dirtree checksum, dirmeta checksum)``, each sorted by the name's UTF-8 bytes."""

    files: tuple[tuple[str, Checksum], ...] = ()
    dirs: tuple[tuple[str, Checksum, Checksum], ...] = ()

    def __post_init__(self) -> None:
        for entries in (self.files, self.dirs):
            prev: bytes | None = None
            for entry in entries:
                validate_filename(entry[0])
                key = entry[0].encode("utf-8")
                if prev is not None and key <= prev:
                    raise FormatError(f"dirtree entries not sorted or duplicated at {entry[0]!r}")
                prev = key
        if {f[0] for f in self.files} & {d[0] for d in self.dirs}:
            raise FormatError("dirtree has a name that is both a file and a directory")

    @classmethod
    def _validated(cls, files: tuple[tuple[str, Checksum], ...], dirs: tuple[tuple[str, Checksum, Checksum], ...]) -> DirTree:
        """A value whose entries the caller has already checked as :meth:`__post_init__` does
        (only :func:`_parse_dirtree_fast`, which checks them as it parses): skips the second pass."""
        tree = object.__new__(cls)
        object.__setattr__(tree, "files", files)
        object.__setattr__(tree, "dirs", dirs)
        return tree

    def to_bytes(self) -> bytes:
        """Serialize as ``(a(say)a(sayay))`` (a direct encoder; property tests compare it with
        the generic codec)."""
        files = _encode_var_array(
            [_frame(n.encode("utf-8") + b"\0" + bytes.fromhex(c), [len(n.encode("utf-8")) + 1]) for n, c in self.files]
        )
        dirs = _encode_var_array(
            [
                _frame(
                    (nb := n.encode("utf-8")) + b"\0" + bytes.fromhex(t) + bytes.fromhex(m),
                    [len(nb) + 33, len(nb) + 1],
                )
                for n, t, m in self.dirs
            ]
        )
        return _frame(files + dirs, [len(files)])

    def to_bytes_generic(self) -> bytes:
        """Serialize with the generic GVariant codec (the reference for :meth:`to_bytes`)."""
        return gvariant.encode(
            DIRTREE_TYPE,
            (
                [(n, to_raw(c)) for n, c in self.files],
                [(n, to_raw(t), to_raw(m)) for n, t, m in self.dirs],
            ),
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, strict: bool = True) -> DirTree:
        """Parse a dirtree object.

        ``strict`` (the default, for anything received or verified) also requires GVariant
        normal form. Reading objects that are already in a repository (checkout, diff) uses
        ``strict=False``: a direct parser of the same framing, several times faster. Names,
        order and checksum lengths are validated either way.

        Raises:
            FormatError: for malformed data, unsafe names (``InvalidTreeEntry``) or bad order.
        """
        if not strict:
            try:
                return _parse_dirtree_fast(data)
            except (IndexError, ValueError, UnicodeDecodeError, struct.error) as e:
                raise FormatError(f"malformed dirtree: {e}") from e
        # Fast path: the direct parser accepts only the normal form. It reads every offset with
        # the width the container's size dictates, elements are contiguous (alignment 1, no
        # padding), each offset table must be exactly as long as its count, each name
        # NUL-terminated and each checksum 32 bytes: every byte of the input is then the one the
        # encoder would write (a property test holds it to re-encoding; re-encoding here cost
        # half of a pull's dirtree parsing). The empty input, which GVariant reads as the
        # default value but is not normal, and anything the parser refuses go to the generic
        # codec, the reference, for its verdict and error message.
        if data:
            try:
                return _parse_dirtree_fast(data)
            except (IndexError, ValueError, UnicodeDecodeError, struct.error, FormatError):
                pass
        files, dirs = cast(
            "tuple[list[tuple[str, bytes]], list[tuple[str, bytes, bytes]]]", gvariant.decode(DIRTREE_TYPE, data)
        )
        return cls(
            tuple((n, from_raw(c)) for n, c in files),
            tuple((n, from_raw(t), from_raw(m)) for n, t, m in dirs),
        )

    @classmethod
    def build(
        cls, files: dict[str, Checksum], dirs: dict[str, tuple[Checksum, Checksum]]
    ) -> DirTree:
        """Build a dirtree from unsorted mappings, sorting the way ostree does (raw bytes)."""

        def key(n: str) -> bytes:
            return n.encode("utf-8")

        return cls(
            tuple((n, files[n]) for n in sorted(files, key=key)),
            tuple((n, *dirs[n]) for n in sorted(dirs, key=key)),
        )


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit: metadata, parent, subject, body, timestamp and the root tree and meta."""

    root_tree: Checksum
    root_meta: Checksum
    parent: Checksum | None = None
    subject: str = ""
    body: str = ""
    timestamp: int = 0
    metadata: tuple[tuple[str, Variant], ...] = ()
    related: tuple[tuple[str, Checksum], ...] = field(default=())

    def __post_init__(self) -> None:
        for key, _ in self.metadata:
            if not key:
                raise FormatError("commit metadata has an empty key")

    def to_bytes(self) -> bytes:
        """Serialize as ``(a{sv}aya(say)sstayay)``; the metadata order is kept (it is hashed)."""
        return gvariant.encode(
            COMMIT_TYPE,
            (
                list(self.metadata),
                to_raw(self.parent) if self.parent else b"",
                [(n, to_raw(c)) for n, c in self.related],
                self.subject,
                self.body,
                bswap64(self.timestamp),
                to_raw(self.root_tree),
                to_raw(self.root_meta),
            ),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Commit:
        """Parse a commit object.

        Raises:
            FormatError: for malformed data or checksums of the wrong length.
        """
        meta, parent, related, subject, body, ts, tree, dmeta = cast(
            "tuple[gvariant.VarDict, bytes, list[tuple[str, bytes]], str, str, int, bytes, bytes]",
            gvariant.decode(COMMIT_TYPE, data),
        )
        if len(parent) not in (0, 32):
            raise FormatError("commit parent checksum has a bad length")
        return cls(
            root_tree=from_raw(tree),
            root_meta=from_raw(dmeta),
            parent=from_raw(parent) if parent else None,
            subject=subject,
            body=body,
            timestamp=bswap64(ts),
            metadata=tuple(meta),
            related=tuple((n, from_raw(c)) for n, c in related),
        )

    def get(self, key: str, default: object = None) -> object:
        """The unboxed value of metadata ``key`` (the first one if repeated), or ``default``.

        Metadata is dynamically typed GVariant: callers check the type they expect.
        """
        return vardict_get(self.metadata, key, default)

    @property
    def version(self) -> str | None:
        """The ``version`` metadata string, if any."""
        v = self.get("version")
        return v if isinstance(v, str) else None

    @property
    def content_checksum(self) -> Checksum:
        """ostree's ContentChecksum (depends only on the tree, not on commit metadata)."""
        return content_checksum(self.root_tree, self.root_meta)


@dataclass(frozen=True, slots=True)
class FileHeader:
    """What ostree hashes about a file besides its content: owner, mode, symlink target, xattrs.

    ``mode`` includes the type bits (``S_IFREG`` or ``S_IFLNK``); ``symlink_target`` is empty for
    regular files.
    """

    uid: int
    gid: int
    mode: int
    rdev: int = 0
    symlink_target: str = ""
    xattrs: Xattrs = ()

    def __post_init__(self) -> None:
        if stat.S_ISLNK(self.mode):
            if not self.symlink_target:
                raise FormatError("symlink with an empty target")
        elif stat.S_ISREG(self.mode):
            if self.symlink_target:
                raise FormatError("regular file with a symlink target")
        else:
            raise FormatError(f"file object mode {self.mode:o} is neither a regular file nor a symlink")
        if self.mode & ~(stat.S_IFMT(self.mode) | 0o7777):
            raise FormatError(f"file mode {self.mode:o} has invalid bits")
        _check_xattrs(self.xattrs)

    @property
    def is_symlink(self) -> bool:
        """Whether this is a symbolic link."""
        return stat.S_ISLNK(self.mode)

    def to_bytes(self) -> bytes:
        """Serialize as ``(uuuusa(ayay))``, the header of the checksum stream."""
        return gvariant.encode(
            FILE_HEADER_TYPE,
            (
                bswap32(self.uid),
                bswap32(self.gid),
                bswap32(self.mode),
                bswap32(self.rdev),
                self.symlink_target,
                _xattrs_to_gv(self.xattrs),
            ),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> FileHeader:
        """Parse a ``(uuuusa(ayay))`` header.

        Raises:
            FormatError: for malformed data.
        """
        uid, gid, mode, rdev, target, xattrs = cast(
            "tuple[int, int, int, int, str, list[tuple[bytes, bytes]]]", gvariant.decode(FILE_HEADER_TYPE, data)
        )
        return cls(bswap32(uid), bswap32(gid), bswap32(mode), bswap32(rdev), target, _xattrs_from_gv(xattrs))

    def checksum_prefix(self) -> bytes:
        """The bytes hashed before the content: ``u32be(len(H)) 00000000 H``.

        Cached: a tree has few distinct (owner, mode, xattrs) combinations.
        """
        return _checksum_prefix(self)

    def checksum(self, content: bytes = b"") -> Checksum:
        """The object checksum of this header with ``content`` (empty for symlinks)."""
        hasher = hashlib.sha256(self.checksum_prefix())
        hasher.update(content)
        return Checksum(hasher.hexdigest())


@lru_cache(maxsize=4096)
def _checksum_prefix(header: FileHeader) -> bytes:
    h = header.to_bytes()
    return len(h).to_bytes(4, "big") + b"\0\0\0\0" + h


#: ``struct`` codes of GVariant framing offsets, by width.
_OFFSET_CODE = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _element_ends(data: bytes, start: int, end: int) -> tuple[int, ...]:
    """End offsets (relative to ``start``) of the elements of a variable-size array in ``data[start:end]``.

    The offset table is read with one ``struct`` call and checked in C (non-decreasing, the last
    one where the table starts), not element by element.
    """
    size = end - start
    if size == 0:
        return ()
    w = container_offset_size(size)
    last_end = int.from_bytes(data[end - w : end], "little")
    count, rem = divmod(size - last_end, w)
    if rem or count <= 0 or last_end > size:
        raise ValueError("bad array framing")
    ends: tuple[int, ...] = struct.unpack_from(f"<{count}{_OFFSET_CODE[w]}", data, start + last_end)
    if list(ends) != sorted(ends):
        raise ValueError("array element out of range")
    return ends


def _dirtree_halves(data: bytes) -> tuple[int, int]:
    """Where a dirtree's files array ends and its directories array ends (the tuple's framing)."""
    n = len(data)
    w = container_offset_size(n)
    files_end = int.from_bytes(data[n - w : n], "little")
    if files_end > n - w:
        raise ValueError("bad tuple framing")
    return files_end, n - w


def _check_name(raw: bytes, name: str, prev: bytes) -> None:
    """The checks of :meth:`DirTree.__post_init__` for one entry name (``raw``: its UTF-8 bytes)."""
    if not raw or b"/" in raw or b"\0" in raw or raw == b"." or raw == b"..":
        validate_filename(name)  # raises InvalidTreeEntry
    if raw <= prev:
        raise FormatError(f"dirtree entries not sorted or duplicated at {name!r}")


#: ``bytes.hex`` typed as making a checksum: a C call per entry (``Checksum(...)`` is a Python one).
_hex_checksum: Callable[[bytes], Checksum] = bytes.hex  # type: ignore[assignment]


def _parse_dirtree_fast(data: bytes) -> DirTree:
    """Decode ``(a(say)a(sayay))`` straight from its framing (see :meth:`DirTree.from_bytes`).

    The hot loop of every walk (checkout, prune, fsck, pull, deploy): the framing is read with
    ``struct``, the per-entry work is inline (no call but the C ones), and the entries are
    validated as they are parsed, exactly as :meth:`DirTree.__post_init__` validates them
    (names, order, a name both a file and a directory), so the value needs no second pass.
    """
    files_end, dirs_end = _dirtree_halves(data)
    hexc = _hex_checksum
    files: list[tuple[str, Checksum]] = []
    prev, s = b"", 0
    for e in _element_ends(data, 0, files_end):
        we = 1 if e - s <= 0xFF else container_offset_size(e - s)
        name_end = s + int.from_bytes(data[e - we : e], "little")
        if e - we - name_end != 32 or name_end <= s or data[name_end - 1] != 0:
            raise ValueError("bad file entry (checksum not 32 bytes, or name not NUL-terminated)")
        raw = data[s : name_end - 1]
        name = raw.decode("utf-8")
        if raw <= prev or b"/" in raw or b"\0" in raw or raw[0] == 0x2E:  # "." starts "." and ".."
            _check_name(raw, name, prev)
        files.append((name, hexc(data[name_end : e - we])))
        prev, s = raw, e
    dirs: list[tuple[str, Checksum, Checksum]] = []
    prev, s = b"", files_end
    for rel in _element_ends(data, files_end, dirs_end):
        e = files_end + rel
        we = 1 if e - s <= 0xFF else container_offset_size(e - s)
        name_end = s + int.from_bytes(data[e - we : e], "little")
        tree_end = s + int.from_bytes(data[e - 2 * we : e - we], "little")
        if tree_end - name_end != 32 or e - 2 * we - tree_end != 32 or name_end <= s or data[name_end - 1] != 0:
            raise ValueError("bad directory entry (checksum not 32 bytes, or name not NUL-terminated)")
        raw = data[s : name_end - 1]
        name = raw.decode("utf-8")
        if raw <= prev or b"/" in raw or b"\0" in raw or raw[0] == 0x2E:
            _check_name(raw, name, prev)
        dirs.append((name, hexc(data[name_end:tree_end]), hexc(data[tree_end : e - 2 * we])))
        prev, s = raw, e
    if files and dirs and {f[0] for f in files} & {d[0] for d in dirs}:
        raise FormatError("dirtree has a name that is both a file and a directory")
    return DirTree._validated(tuple(files), tuple(dirs))


def dirtree_children(data: bytes) -> tuple[list[Checksum], list[tuple[Checksum, Checksum]]]:
    """The checksums a dirtree names: its files' content objects, its subdirectories' (tree, meta).

    What a reachability walk (prune, every deploy's cleanup) needs of each dirtree, read from
    the same framing as :func:`_parse_dirtree_fast` with the same framing checks (each checksum
    32 bytes, each name NUL-terminated and not empty) but without decoding or validating names:
    they do not decide what is reachable, and the dirtree was verified when it was written
    (fsck and checkout parse it whole).

    Raises:
        FormatError: for malformed framing.
    """
    try:
        files_end, dirs_end = _dirtree_halves(data)
        hexc = _hex_checksum
        files: list[Checksum] = []
        s = 0
        for e in _element_ends(data, 0, files_end):
            we = 1 if e - s <= 0xFF else container_offset_size(e - s)
            name_end = s + int.from_bytes(data[e - we : e], "little")
            if e - we - name_end != 32 or name_end <= s + 1 or data[name_end - 1] != 0:
                raise ValueError("bad file entry (checksum not 32 bytes, or name not NUL-terminated)")
            files.append(hexc(data[name_end : e - we]))
            s = e
        dirs: list[tuple[Checksum, Checksum]] = []
        s = files_end
        for rel in _element_ends(data, files_end, dirs_end):
            e = files_end + rel
            we = 1 if e - s <= 0xFF else container_offset_size(e - s)
            name_end = s + int.from_bytes(data[e - we : e], "little")
            tree_end = s + int.from_bytes(data[e - 2 * we : e - we], "little")
            if tree_end - name_end != 32 or e - 2 * we - tree_end != 32 or name_end <= s + 1 or data[name_end - 1] != 0:
                raise ValueError("bad directory entry (checksum not 32 bytes, or name not NUL-terminated)")
            dirs.append((hexc(data[name_end:tree_end]), hexc(data[tree_end : e - 2 * we])))
            s = e
    except (IndexError, ValueError, struct.error) as e:
        raise FormatError(f"malformed dirtree: {e}") from e
    return files, dirs


def _frame(body: bytes, offsets: list[int]) -> bytes:
    """A container (alignment 1) with its framing ``offsets`` appended in the given order."""
    w = offset_size(len(body), len(offsets))
    return body + b"".join(o.to_bytes(w, "little") for o in offsets)


def _encode_var_array(elements: list[bytes]) -> bytes:
    """An array of variable-size, alignment-1 elements with its end offsets."""
    ends = []
    pos = 0
    for e in elements:
        pos += len(e)
        ends.append(pos)
    return _frame(b"".join(elements), ends)
