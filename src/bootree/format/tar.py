"""Tar archives (ustar, GNU, pax), read side: headers straight from a stream of byte chunks.

Layer: format (pure). An OCI layer is a tar, and an import is dominated by parsing it:
:mod:`tarfile` builds a ``TarInfo``, decodes every field and wraps each body in a file object
per member, about 300 µs per member in a corpus layer (an encapsulated image has three or four
members per file). :class:`TarReader` reads the 512-byte header blocks out of the chunks the
decompressor hands over (no copy of the stream), decodes the few fields an import needs, and
gives a member's body as one ``bytes`` (small files) or as ``memoryview`` slices of the chunks
(large ones), so the hashing and writing threads get them without another copy.

What it reads (POSIX.1-2001 ``pax`` and the formats before it, as GNU tar and tarfile write
them): ustar headers with their ``prefix``; GNU long names and link names (``L``, ``K``);
pax extended headers (``x``; global ``g`` ones apply to every later member) with ``path``,
``linkpath``, ``size``, ``uid``, ``gid``, ``mtime`` and ``SCHILY.xattr.NAME`` (the xattr
value as raw bytes); numbers in octal or base-256; the header checksum (unsigned, or signed as
some old writers computed it). Member types are given as they are (regular files, hardlinks,
symlinks, directories, devices, fifos, and unknown ones, whose body is skipped); what a caller
accepts is its decision. GNU and pax sparse files are refused (no OCI writer produces them).

Names are decoded as UTF-8 with ``surrogateescape`` (so any byte string survives), as tarfile
does on Linux. Anything malformed (a bad checksum, a non-octal number, a truncated header or
body, a pax record whose length does not add up, an oversized extended header) raises
:class:`~bootree.errors.TarFormatError`; the archive ends at its first zero block, or where the
stream ends on a block boundary between members.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bootree.errors import TarFormatError

__all__ = [
    "BLKTYPE",
    "CHRTYPE",
    "DIRTYPE",
    "FIFOTYPE",
    "LNKTYPE",
    "MAX_EXTENDED",
    "REGTYPE",
    "SYMTYPE",
    "TarEntry",
    "TarReader",
]

BLOCK = 512
REGTYPE = b"0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
_AREGTYPE = b"\0"
_CONTTYPE = b"7"
_LONGNAME = b"L"
_LONGLINK = b"K"
_PAX = b"x"
_PAX_GLOBAL = b"g"
_SOLARIS_PAX = b"X"
_SPARSE = b"S"
#: Types whose body is the member's content (tarfile's REGULAR_TYPES without sparse).
_REGULAR = frozenset({REGTYPE, _AREGTYPE, _CONTTYPE})
#: Types with no body, whatever their size field says.
_NO_BODY = frozenset({LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE})
#: The largest extended header (pax record set, GNU long name) read into memory.
MAX_EXTENDED = 16 << 20
_ZERO_BLOCK = bytes(BLOCK)
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_POSIX_MAGIC = b"ustar\x0000"
_OCTAL = b"01234567"
_HIGH = bytes(range(128, 256))
_XATTR = "SCHILY.xattr."


@dataclass(slots=True)
class TarEntry:
    """One member: its header fields after extended headers were applied."""

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    """``SCHILY.xattr.*`` records, in archive order, as raw bytes (name without the prefix)."""

    def isreg(self) -> bool:
        """A regular file (``0``, the old ``\\0``, and contiguous ``7``)."""
        return self.type in _REGULAR

    def isdir(self) -> bool:
        """A directory."""
        return self.type == DIRTYPE

    def issym(self) -> bool:
        """A symbolic link (``linkname`` is its target)."""
        return self.type == SYMTYPE

    def islnk(self) -> bool:
        """A hardlink to the earlier member named ``linkname``."""
        return self.type == LNKTYPE

    def ischr(self) -> bool:
        """A character device."""
        return self.type == CHRTYPE

    def isblk(self) -> bool:
        """A block device."""
        return self.type == BLKTYPE

    def isfifo(self) -> bool:
        """A fifo."""
        return self.type == FIFOTYPE


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstr(field: bytes) -> bytes:
    i = field.find(b"\0")
    return field if i < 0 else field[:i]


def _number(field: bytes, what: str) -> int:
    """An octal (NUL or space terminated) or base-256 number field."""
    s = field.strip(b" \0")
    if s and not s.translate(None, _OCTAL):  # the common case: digits, then NUL or space
        return int(s, 8)
    first = field[0]
    if first == 0x80 or first == 0xFF:
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if first == 0xFF else n
    s = _cstr(field).strip()
    if not s:
        return 0
    if s.translate(None, _OCTAL):
        raise TarFormatError(f"tar header: {what} field {field!r} is not an octal number")
    return int(s, 8)


def _pax_records(data: bytes) -> dict[str, bytes]:
    """``LEN key=value\\n`` records; ``LEN`` counts the whole record, its own digits included."""
    out: dict[str, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] == 0:  # some writers pad the record set with NULs
            if data[pos:].strip(b"\0"):
                raise TarFormatError("pax header: data after NUL padding")
            break
        sp = data.find(b" ", pos, pos + 21)
        digits = data[pos:sp] if sp > pos else b""
        if not digits or digits.translate(None, b"0123456789"):
            raise TarFormatError(f"pax header: malformed record length at byte {pos}")
        n = int(digits)
        stop = pos + n
        if n <= len(digits) + 1 or stop > end or data[stop - 1] != 0x0A:
            raise TarFormatError(f"pax header: record at byte {pos} does not end where its length says")
        key, eq, value = data[sp + 1 : stop - 1].partition(b"=")
        if not eq or not key:
            raise TarFormatError(f"pax header: record at byte {pos} has no key=value")
        out[_text(key)] = value
        pos = stop
    return out


def _pax_number(value: bytes, key: str) -> int:
    s = value.strip()
    whole, _, frac = s.partition(b".")
    neg = whole.startswith(b"-")
    digits = whole[1:] if neg else whole
    if not digits or digits.translate(None, b"0123456789") or frac.translate(None, b"0123456789"):
        raise TarFormatError(f"pax header: {key}={value!r} is not a number")
    return -int(digits) if neg else int(digits)


class TarReader:
    """Members of a tar read from ``next_chunk()`` (``b""`` at the end of the stream).

    Iterate for :class:`TarEntry` records; during an iteration step the current member's body
    can be read once with :meth:`read_body` or :meth:`body_chunks`. A body not read is skipped.
    """

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._body = 0  # bytes of the current member's body not read yet
        self._pad = 0  # padding after it
        self._global: dict[str, bytes] = {}
        self.offset = 0
        """Bytes of the archive consumed so far."""

    # --- buffer ----------------------------------------------------------------------------

    def _avail(self) -> int:
        return len(self._buf) - self._pos

    def _fill(self, n: int) -> bool:
        """Make at least ``n`` bytes available from ``_pos``; False if the stream ends first."""
        while len(self._buf) - self._pos < n:
            if self._eof:
                return False
            chunk = self._next_chunk()
            if not chunk:
                self._eof = True
                return False
            rest = self._buf[self._pos :]
            self._buf = rest + chunk if rest else chunk
            self._pos = 0
        return True

    def _take(self, n: int) -> bytes:
        if n > self._avail() + BLOCK:
            return self._take_long(n)
        if not self._fill(n):
            raise TarFormatError(f"tar: truncated at byte {self.offset + self._avail()} ({n} bytes wanted)")
        p = self._pos
        self._pos = p + n
        self.offset += n
        return self._buf[p : p + n]

    def _take_long(self, n: int) -> bytes:
        """``n`` bytes spanning many chunks: joined once, not re-concatenated per chunk."""
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < n:
            chunk = self._next_chunk() if not self._eof else b""
            if not chunk:
                self._eof = True
                raise TarFormatError(f"tar: truncated at byte {self.offset + have} ({n} bytes wanted)")
            parts.append(chunk)
            have += len(chunk)
        last = parts[-1]
        keep = have - n
        parts[-1] = last[: len(last) - keep]
        self._buf, self._pos = last, len(last) - keep
        self.offset += n
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n:
            if not self._avail() and not self._fill(1):
                raise TarFormatError(f"tar: truncated at byte {self.offset}")
            k = min(n, self._avail())
            self._pos += k
            self.offset += k
            n -= k

    # --- bodies ----------------------------------------------------------------------------

    def read_body(self) -> bytes:
        """The rest of the current member's body, whole."""
        n, self._body = self._body, 0
        data = self._take(n) if n else b""
        self._skip(self._pad)
        self._pad = 0
        return data

    def body_chunks(self, size: int = 1 << 20) -> Iterator[memoryview]:
        """The rest of the current member's body in slices of at most ``size`` bytes (no copies)."""
        while self._body:
            if not self._avail() and not self._fill(1):
                raise TarFormatError(f"tar: member body truncated at byte {self.offset}")
            k = min(self._body, self._avail(), size)
            p = self._pos
            view = memoryview(self._buf)[p : p + k]
            self._pos = p + k
            self.offset += k
            self._body -= k
            yield view
        self._skip(self._pad)
        self._pad = 0

    def _extended(self, size: int) -> bytes:
        if size > MAX_EXTENDED:
            raise TarFormatError(f"tar: extended header of {size} bytes (more than {MAX_EXTENDED})")
        data = self._take(size)
        self._skip(-size % BLOCK)
        return data

    # --- headers ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[TarEntry]:
        while True:
            if self._body or self._pad:
                self._skip(self._body + self._pad)
                self._body = self._pad = 0
            entry = self._next_member()
            if entry is None:
                return
            yield entry

    def _header(self) -> bytes | None:
        """The next header block, ``None`` at the end of the archive."""
        if not self._fill(BLOCK):
            if self._avail():
                raise TarFormatError(f"tar: truncated header at byte {self.offset}")
            return None
        block = self._take(BLOCK)
        if block == _ZERO_BLOCK:
            return None
        return block

    def _next_member(self) -> TarEntry | None:
        longname: bytes | None = None
        longlink: bytes | None = None
        pax: dict[str, bytes] | None = None
        at = self.offset
        while True:
            block = self._header()
            if block is None:
                if longname is not None or longlink is not None or pax is not None:
                    raise TarFormatError(f"tar: archive ends after an extended header at byte {at}")
                return None
            _checksum(block, self.offset - BLOCK)
            (name, mode, uid, gid, size, mtime, _chk, typ, link, magic, _un, _gn, major, minor,
             prefix) = _HEADER.unpack(block)
            nsize = _number(size, "size")
            if nsize < 0:
                raise TarFormatError(f"tar header at byte {self.offset - BLOCK}: negative size")
            if typ == _LONGNAME:
                longname = _cstr(self._extended(nsize))
            elif typ == _LONGLINK:
                longlink = _cstr(self._extended(nsize))
            elif typ == _PAX or typ == _SOLARIS_PAX:
                pax = {**(pax or {}), **_pax_records(self._extended(nsize))}
            elif typ == _PAX_GLOBAL:
                self._global.update(_pax_records(self._extended(nsize)))
            else:
                break
        if typ == _SPARSE:
            raise TarFormatError(f"tar member at byte {self.offset - BLOCK}: sparse files are not supported")
        if longname is not None:
            rawname = longname
        else:
            rawname = _cstr(name)
            if magic == _POSIX_MAGIC and prefix[0]:
                rawname = _cstr(prefix) + b"/" + rawname
        e = TarEntry(_text(rawname), typ, _number(mode, "mode"), _number(uid, "uid"), _number(gid, "gid"),
                     nsize, _number(mtime, "mtime"), _text(longlink if longlink is not None else _cstr(link)))
        if typ == CHRTYPE or typ == BLKTYPE:
            e.devmajor, e.devminor = _number(major, "devmajor"), _number(minor, "devminor")
        records = {**self._global, **pax} if pax is not None else self._global
        if records:
            _apply_pax(e, records)
        if e.uid < 0 or e.gid < 0:
            raise TarFormatError(f"tar member {e.name!r}: negative owner")
        if typ == _AREGTYPE and e.name.endswith("/"):
            e.type = DIRTYPE  # a V7 directory
        if e.type == DIRTYPE:
            e.name = e.name.rstrip("/") or e.name
        body = 0 if e.type in _NO_BODY else e.size
        self._body, self._pad = body, -body % BLOCK
        return e


def _checksum(block: bytes, at: int) -> None:
    """Check a header's checksum: the sum of its bytes with the checksum field as spaces.

    The byte sum comes from Adler-32's first half (C speed; ``sum()`` over the bytes was the
    parser's largest cost): it is the sum modulo 65521, and the sum itself lies in a window
    narrower than that, fixed by how many bytes are >= 128 (``h`` of them: each adds 128-255,
    the others 0-127), so the window holds exactly one value with that remainder.
    """
    want = _number(block[148:156], "checksum")
    field = block[148:156]
    h = BLOCK - len(block.translate(None, _HIGH))
    lo = 128 * h
    total = lo + (((zlib.adler32(block) & 0xFFFF) - 1 - lo) % 65521)
    got = total - sum(field) + 8 * 0x20
    if want == got:
        return
    # Some old writers summed signed chars.
    signed = got - 256 * (h - (8 - len(field.translate(None, _HIGH))))
    if want != signed:
        raise TarFormatError(f"tar header at byte {at}: checksum {want:o} does not match its bytes ({got:o})")


def _apply_pax(e: TarEntry, records: dict[str, bytes]) -> None:
    if any(k.startswith("GNU.sparse.") for k in records):
        raise TarFormatError(f"tar member {e.name!r}: sparse files are not supported")
    v = records.get("path")
    if v is not None:
        e.name = _text(v)
    v = records.get("linkpath")
    if v is not None:
        e.linkname = _text(v)
    v = records.get("size")
    if v is not None:
        e.size = _pax_number(v, "size")
        if e.size < 0:
            raise TarFormatError(f"tar member {e.name!r}: negative size")
    v = records.get("uid")
    if v is not None:
        e.uid = _pax_number(v, "uid")
    v = records.get("gid")
    if v is not None:
        e.gid = _pax_number(v, "gid")
    v = records.get("mtime")
    if v is not None:
        e.mtime = _pax_number(v, "mtime")
    xattrs = [(k[len(_XATTR) :].encode("utf-8", "surrogateescape"), val)
              for k, val in records.items() if k.startswith(_XATTR)]
    if xattrs:
        e.xattrs = tuple(xattrs)
