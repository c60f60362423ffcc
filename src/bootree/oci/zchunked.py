"""The zstd:chunked layer format of containers/storage: TOC, tar-split, footer, annotations.

Layer: oci (pure: bytes in, values out; zstandard and a CRC-64 library are its only helpers).
A zstd:chunked blob is a valid multi-frame zstd stream of the layer tar, laid out so that a
client can fetch single files with HTTP ``Range`` requests:

* every regular file's content is a zstd frame of its own (``offset`` .. ``endOffset`` in the
  TOC); tar headers and padding are in the frames between them;
* then three *skippable* frames (magic ``0x184D2A50``, little-endian 32-bit length): the TOC
  (the "manifest": zstd-compressed JSON ``{"version":1,"entries":[...],"tarSplitDigest":...}``
  whose entries carry ``type``, ``name``, ``linkName``, ``mode``, ``size``, ``uid``, ``gid``,
  ``modtime``, ``xattrs`` (base64 values), ``digest`` (sha256 of the content), ``offset``,
  ``endOffset``), the tar-split data (zstd-compressed JSON lines of vbatts/tar-split: type 2
  segments of raw tar bytes, type 1 file entries with name, size and the CRC-64/ISO of the
  content, numbered by ``position``), and a 64-byte footer (seven little-endian u64: TOC offset,
  compressed and uncompressed length, manifest type 1, tar-split offset, compressed and
  uncompressed length; then ``GNUlInUx``);
* the layer descriptor's annotations repeat the positions and carry the sha256 of the
  compressed TOC (``io.github.containers.zstd-chunked.manifest-checksum``), which is what makes
  a partial pull verifiable: manifest digest → annotation → TOC → each file's digest, and the
  TOC's ``tarSplitDigest`` → the tar-split data → the exact tar, checked against the diff_id.

Field names and layouts are containers/storage's (``pkg/chunked/internal/minimal``) and
tar-split's (``tar/storage``); the code is bootree's own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bootree.errors import LayerError

__all__ = [
    "FOOTER_SIZE",
    "MANIFEST_CHECKSUM_KEY",
    "MANIFEST_POSITION_KEY",
    "TARSPLIT_POSITION_KEY",
    "TAR_HEADERS_BOOTREE",
    "TAR_HEADERS_KEY",
    "ZSTD_CHUNKED",
    "ChunkedLayout",
    "Crc64",
    "Footer",
    "TarSplitEntry",
    "Toc",
    "TocEntry",
    "decode_tarsplit",
    "decode_toc",
    "encode_tarsplit_entry",
    "encode_toc",
    "layout_from_annotations",
    "skippable_frame",
    "zstd_decompress",
]

ZSTD_CHUNKED = "zstd:chunked"
"""The compression name (``--compression=zstd:chunked``); the media type is ``tar+zstd``."""
MANIFEST_CHECKSUM_KEY = "io.github.containers.zstd-chunked.manifest-checksum"
MANIFEST_POSITION_KEY = "io.github.containers.zstd-chunked.manifest-position"
TARSPLIT_POSITION_KEY = "io.github.containers.zstd-chunked.tarsplit-position"
MANIFEST_TYPE_CRFS = 1
#: bootree's own annotation: the layer tar was written by bootree's tar writer, so its header
#: bytes can be derived from the TOC (:func:`bootree.oci.zchunktar.synth_tarsplit`).
TAR_HEADERS_KEY = "org.bootree.zstd-chunked.tar-headers"
TAR_HEADERS_BOOTREE = "bootree-tarfile-1"
FOOTER_SIZE = 64
FOOTER_MAGIC = b"GNUlInUx"
SKIPPABLE_MAGIC = b"\x50\x2a\x4d\x18"
SKIPPABLE_HEADER = 8
#: Bounds on what a partial pull accepts (a TOC or tar-split larger than this is refused).
MAX_METADATA = 256 << 20
TAR_TYPES = {b"0": "reg", b"\0": "reg", b"7": "reg", b"1": "hardlink", b"2": "symlink", b"3": "char",
             b"4": "block", b"5": "dir", b"6": "fifo"}
_ENTRY_TYPES = frozenset({"reg", "hardlink", "symlink", "char", "block", "dir", "fifo", "chunk"})
_HEX64 = frozenset("0123456789abcdef")

SEGMENT = 2
FILE = 1


def skippable_frame(data: bytes) -> bytes:
    """A zstd skippable frame holding ``data`` (zstd decoders skip it)."""
    return SKIPPABLE_MAGIC + struct.pack("<I", len(data)) + data


def zstd_decompress(data: bytes, limit: int, what: str) -> bytes:
    """Decompress one or more zstd frames, refusing more than ``limit`` bytes of output.

    Raises:
        LayerError: bad zstd data or output over the limit.
    """
    import zstandard

    try:
        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as r:
            out = r.read(limit + 1)
    except zstandard.ZstdError as e:
        raise LayerError(f"{what}: bad zstd data: {e}") from None
    if len(out) > limit:
        raise LayerError(f"{what}: more than {limit} bytes uncompressed")
    return bytes(out)


class Crc64:
    """CRC-64 with the ISO polynomial as Go's ``hash/crc64`` computes it (tar-split's checksum)."""

    def __init__(self) -> None:
        import anycrc

        self._crc = anycrc.CRC(width=64, poly=0x1B, init=0xFFFFFFFFFFFFFFFF, refin=True, refout=True,
                               xorout=0xFFFFFFFFFFFFFFFF)
        self._value: int | None = None

    def reset(self) -> None:
        """Start over (one instance serves many files)."""
        self._value = None

    def update(self, data: bytes | memoryview) -> None:
        """Add bytes."""
        self._value = int(self._crc.calc(data, self._value))

    def digest(self) -> bytes:
        """The 8 big-endian bytes (Go's ``Sum``)."""
        return (self._value or 0).to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class TocEntry:
    """One TOC entry (containers/storage's ``FileMetadata``), without the rolling-hash chunks."""

    type: str
    name: str
    link_name: str = ""
    mode: int = 0
    size: int = 0
    uid: int = 0
    gid: int = 0
    modtime: str | None = None
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, str] = field(default_factory=dict, hash=False)
    """xattr name → base64 of the value, as containers/storage stores them."""
    digest: str = ""
    offset: int = 0
    end_offset: int = 0

    def to_json(self) -> dict[str, Any]:
        """The entry as containers/storage marshals it (field order, empty fields omitted)."""
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        for key, value in (("linkName", self.link_name), ("mode", self.mode), ("size", self.size),
                           ("uid", self.uid), ("gid", self.gid), ("modtime", self.modtime),
                           ("devMajor", self.devmajor), ("devMinor", self.devminor),
                           ("xattrs", dict(sorted(self.xattrs.items())) or None), ("digest", self.digest),
                           ("offset", self.offset), ("endOffset", self.end_offset)):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, d: object) -> TocEntry:
        """Parse and check one entry.

        Raises:
            LayerError: a malformed entry.
        """
        if not isinstance(d, dict):
            raise LayerError("zstd:chunked TOC: an entry is not an object")

        def s(key: str) -> str:
            v = d.get(key, "")
            if not isinstance(v, str):
                raise LayerError(f"zstd:chunked TOC: {key!r} is not a string")
            return v

        def n(key: str) -> int:
            v = d.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise LayerError(f"zstd:chunked TOC: {key!r} is not a non-negative integer")
            return v

        typ = s("type")
        if typ not in _ENTRY_TYPES:
            raise LayerError(f"zstd:chunked TOC: unknown entry type {typ!r}")
        xattrs = d.get("xattrs") or {}
        if not isinstance(xattrs, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in xattrs.items()):
            raise LayerError("zstd:chunked TOC: 'xattrs' is not a map of strings")
        digest = s("digest")
        if digest and not (digest.startswith("sha256:") and len(digest) == 71 and set(digest[7:]) <= _HEX64):
            raise LayerError(f"zstd:chunked TOC: bad digest {digest!r}")
        mt = d.get("modtime")
        if mt is not None and not isinstance(mt, str):
            raise LayerError("zstd:chunked TOC: 'modtime' is not a string")
        e = cls(typ, s("name"), s("linkName"), n("mode"), n("size"), n("uid"), n("gid"), mt, n("devMajor"),
                n("devMinor"), dict(xattrs), digest, n("offset"), n("endOffset"))
        if e.end_offset < e.offset:
            raise LayerError(f"zstd:chunked TOC: entry {e.name!r} ends before it starts")
        return e


@dataclass(frozen=True, slots=True)
class Toc:
    """The table of contents of a zstd:chunked layer."""

    entries: tuple[TocEntry, ...]
    tar_split_digest: str = ""
    version: int = 1


def encode_toc(toc: Toc) -> bytes:
    """The TOC JSON (compact, deterministic)."""
    doc: dict[str, Any] = {"version": toc.version, "entries": [e.to_json() for e in toc.entries]}
    if toc.tar_split_digest:
        doc["tarSplitDigest"] = toc.tar_split_digest
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def decode_toc(data: bytes) -> Toc:
    """Parse a TOC's JSON.

    Raises:
        LayerError: not JSON, another version, malformed entries.
    """
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise LayerError(f"zstd:chunked TOC is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("entries"), list):
        raise LayerError("zstd:chunked TOC: not a version 1 TOC with entries")
    tsd = doc.get("tarSplitDigest", "")
    if not isinstance(tsd, str):
        raise LayerError("zstd:chunked TOC: 'tarSplitDigest' is not a string")
    return Toc(tuple(TocEntry.from_json(e) for e in doc["entries"]), tsd)


@dataclass(frozen=True, slots=True)
class TarSplitEntry:
    """One tar-split record: raw tar bytes (segment) or a file's name, size and CRC-64."""

    type: int
    position: int
    payload: bytes = b""
    name: bytes = b""
    size: int = 0


def encode_tarsplit_entry(e: TarSplitEntry) -> bytes:
    """One JSON line, as tar-split's JSON packer writes it (``name_raw`` for non-UTF-8 names)."""
    d: dict[str, Any] = {"type": e.type}
    if e.name:
        try:
            d["name"] = e.name.decode("utf-8")
        except UnicodeDecodeError:
            d["name_raw"] = base64.b64encode(e.name).decode("ascii")
    if e.size:
        d["size"] = e.size
    d["payload"] = base64.b64encode(e.payload).decode("ascii") if e.payload else None
    d["position"] = e.position
    return json.dumps(d, separators=(",", ":")).encode("ascii") + b"\n"


def decode_tarsplit(lines: Iterable[bytes]) -> Iterator[TarSplitEntry]:
    """The records of tar-split JSON lines (one record a line), checked to be in order.

    Raises:
        LayerError: a malformed record.
    """
    expect = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            typ, pos = d["type"], d["position"]
            raw = d.get("payload")
            payload = base64.b64decode(raw, validate=True) if raw else b""
            name = (base64.b64decode(d["name_raw"], validate=True) if d.get("name_raw")
                    else str(d.get("name", "")).encode("utf-8", "surrogateescape"))
            size = d.get("size", 0)
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise LayerError(f"zstd:chunked tar-split: bad record: {e}") from None
        if typ not in (FILE, SEGMENT) or pos != expect or not isinstance(size, int) or size < 0:
            raise LayerError(f"zstd:chunked tar-split: bad record {line[:80]!r}")
        expect += 1
        yield TarSplitEntry(typ, pos, payload, name, size)


@dataclass(frozen=True, slots=True)
class Footer:
    """The 64-byte footer (the content of the last skippable frame)."""

    toc_offset: int
    toc_length: int
    toc_uncompressed: int
    tarsplit_offset: int
    tarsplit_length: int
    tarsplit_uncompressed: int
    manifest_type: int = MANIFEST_TYPE_CRFS

    def encode(self) -> bytes:
        """The footer bytes."""
        return struct.pack("<7Q", self.toc_offset, self.toc_length, self.toc_uncompressed, self.manifest_type,
                           self.tarsplit_offset, self.tarsplit_length, self.tarsplit_uncompressed) + FOOTER_MAGIC

    @classmethod
    def decode(cls, data: bytes) -> Footer:
        """Parse a footer.

        Raises:
            LayerError: wrong size or magic.
        """
        if len(data) != FOOTER_SIZE or data[56:] != FOOTER_MAGIC:
            raise LayerError("zstd:chunked footer: wrong size or magic")
        o, ln, u, t, so, sl, su = struct.unpack("<7Q", data[:56])
        return cls(o, ln, u, so, sl, su, t)

    def annotations(self, toc_checksum: str) -> dict[str, str]:
        """The layer descriptor annotations for this footer."""
        return {
            MANIFEST_CHECKSUM_KEY: toc_checksum,
            MANIFEST_POSITION_KEY: f"{self.toc_offset}:{self.toc_length}:{self.toc_uncompressed}:{self.manifest_type}",
            TARSPLIT_POSITION_KEY: f"{self.tarsplit_offset}:{self.tarsplit_length}:{self.tarsplit_uncompressed}",
        }


@dataclass(frozen=True, slots=True)
class ChunkedLayout:
    """Where a layer's TOC and tar-split are, from its descriptor annotations."""

    toc_checksum: str
    toc_offset: int
    toc_length: int
    toc_uncompressed: int
    tarsplit_offset: int
    tarsplit_length: int
    tarsplit_uncompressed: int

    def check_toc(self, compressed: bytes) -> None:
        """Raise unless ``compressed`` is the TOC the annotation names.

        Raises:
            LayerError: a checksum mismatch.
        """
        got = "sha256:" + hashlib.sha256(compressed).hexdigest()
        if got != self.toc_checksum:
            raise LayerError(f"zstd:chunked TOC checksum mismatch: annotation says {self.toc_checksum}, got {got}")


def _ints(value: str, n: int) -> list[int] | None:
    parts = value.split(":")
    if len(parts) != n or not all(p.isdigit() for p in parts):
        return None
    return [int(p) for p in parts]


def layout_from_annotations(annotations: dict[str, str], blob_size: int) -> ChunkedLayout | None:
    """The zstd:chunked layout a descriptor announces, or ``None`` (missing, malformed, out of bounds)."""
    checksum = annotations.get(MANIFEST_CHECKSUM_KEY, "")
    toc = _ints(annotations.get(MANIFEST_POSITION_KEY, ""), 4)
    ts = _ints(annotations.get(TARSPLIT_POSITION_KEY, ""), 3)
    if not checksum.startswith("sha256:") or toc is None or ts is None or toc[3] != MANIFEST_TYPE_CRFS:
        return None
    layout = ChunkedLayout(checksum, toc[0], toc[1], toc[2], ts[0], ts[1], ts[2])
    for off, ln, un in ((toc[0], toc[1], toc[2]), (ts[0], ts[1], ts[2])):
        if off + ln > blob_size or ln == 0 or un > MAX_METADATA or ln > MAX_METADATA:
            return None
    return layout


def tar_offsets(entries: Iterable[TarSplitEntry]) -> Iterator[tuple[TarSplitEntry, int]]:
    """Each record with its offset in the tar it rebuilds."""
    pos = 0
    for e in entries:
        yield e, pos
        pos += len(e.payload) if e.type == SEGMENT else e.size
