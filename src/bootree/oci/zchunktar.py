"""bootree's tar header rule, and the tar-split of a bootree-written zstd:chunked layer
derived from its TOC.

Layer: oci (pure: tarfile only; shared by the tar writer, :mod:`bootree.oci.tarexport`, and
the partial pull, which must not import the publishing side). A partial pull needs every raw byte of the layer tar that is not file content (tar
headers, PAX records, padding, the end-of-archive blocks) to rebuild the exact tar its diff_id
names. containers/storage ships them as the tar-split data, base64 in JSON lines: on the corpus
that is 4 MB of an update's 75 MB. When the layer says it was written by bootree's tar writer
(:data:`~bootree.oci.zchunked.TAR_HEADERS_KEY`), those bytes follow from the TOC: every entry's
name, type, link, mode, ids, mtime, device numbers and xattrs are there, and the writer's rules
(:func:`header_format`, Python's tarfile with utf-8 names) are
deterministic. :func:`synth_tarsplit` rebuilds the records from the TOC alone; the caller must
still check the rebuilt tar against the diff_id, and fetch the real tar-split when it does not
match (an image from another writer that copied the annotation, another Python's tarfile).
"""

from __future__ import annotations

import base64
import binascii
import tarfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Literal

from bootree.oci.zchunked import FILE, SEGMENT, TarSplitEntry, TocEntry

__all__ = ["header_format", "synth_tarsplit"]

_BLOCK = tarfile.BLOCKSIZE
_KINDS = {"reg": tarfile.REGTYPE, "hardlink": tarfile.LNKTYPE, "symlink": tarfile.SYMTYPE, "char": tarfile.CHRTYPE,
          "block": tarfile.BLKTYPE, "dir": tarfile.DIRTYPE, "fifo": tarfile.FIFOTYPE}


def header_format(ti: tarfile.TarInfo) -> Literal[0, 2]:
    """The tar format bootree writes an entry in: plain ustar when it fits (one 512-byte
    header), else PAX (xattrs, non-ASCII or overlong names, large ids); a ``ValueError`` from
    ustar (a name it cannot split) means PAX too."""
    fits = (not ti.pax_headers and ti.name.isascii() and ti.linkname.isascii() and len(ti.linkname) <= 100
            and max(ti.uid, ti.gid) < 0o7777777 and ti.size < 0o77777777777)
    return tarfile.USTAR_FORMAT if fits else tarfile.PAX_FORMAT


class _NotDerivable(Exception):
    """An entry the writer's rules cannot reproduce (a ``chunk`` entry, an odd mtime)."""


def _mtime(modtime: str | None) -> int:
    if not modtime:
        return 0
    try:
        return int(datetime.strptime(modtime, "%Y-%m-%dT%H:%M:%S%z").timestamp())
    except ValueError:
        raise _NotDerivable(modtime) from None


def _header(e: TocEntry) -> bytes:
    kind = _KINDS.get(e.type)
    if kind is None:
        raise _NotDerivable(e.type)
    ti = tarfile.TarInfo(e.name)
    ti.type, ti.uid, ti.gid, ti.mode, ti.size, ti.linkname = kind, e.uid, e.gid, e.mode, e.size, e.link_name
    ti.mtime, ti.devmajor, ti.devminor = _mtime(e.modtime), e.devmajor, e.devminor
    ti.uname = ti.gname = ""
    if e.xattrs:
        try:
            values = {k.encode("utf-8", "surrogateescape"): base64.b64decode(v, validate=True)
                      for k, v in e.xattrs.items()}
        except binascii.Error:
            raise _NotDerivable("xattr") from None
        # The writer's order: sorted by name bytes (tarexport._pax).
        ti.pax_headers = {"SCHILY.xattr." + k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
                          for k, v in sorted(values.items())}
    if header_format(ti) == tarfile.USTAR_FORMAT:
        try:
            return ti.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")
        except ValueError:  # a name ustar cannot split: the writer falls back to PAX too
            pass
    try:
        return ti.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    except ValueError:
        raise _NotDerivable(e.name) from None


def synth_tarsplit(entries: Iterable[TocEntry]) -> Iterator[TarSplitEntry] | None:
    """The tar-split records of the tar bootree's writer makes for these TOC entries, or None
    when an entry is outside its rules (then the real tar-split must be fetched)."""
    out: list[TarSplitEntry] = []
    seg = bytearray()
    pos = 0

    def flush() -> None:
        nonlocal pos
        if seg:
            out.append(TarSplitEntry(SEGMENT, pos, bytes(seg)))
            pos += 1
            seg.clear()

    total = 0
    try:
        for e in entries:
            head = _header(e)
            seg += head
            total += len(head)
            size = e.size if e.type == "reg" else 0
            if size:
                flush()
                out.append(TarSplitEntry(FILE, pos, name=e.name.encode("utf-8", "surrogateescape"), size=size))
                pos += 1
                pad = -size % _BLOCK
                seg += bytes(pad)
                total += size + pad
    except _NotDerivable:
        return None
    # tarfile.close(): two zero blocks, then zeros up to a whole record.
    end = total + 2 * _BLOCK
    end += -end % tarfile.RECORDSIZE
    seg += bytes(end - total)
    flush()
    return iter(out)
