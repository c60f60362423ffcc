"""Writing a static delta's parts: operations and payload into numbered, compressed part files.

Layer: delta. :mod:`bootree.delta.compile` decides what each new object becomes (spliced whole,
rolling-checksum copies, bsdiff, bootree's zstd or recompressed forms); this module turns those
decisions into the operation stream and payload of a part (:class:`PartAssembler`), closes a
part when its payload would pass ``max_chunk_size`` (8 MiB at most in bootree's format), and compresses and writes it to a staging
directory on a worker thread while the next one fills. An xz memory budget keeps at most one
preset-8 encoder of a full part alive at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bootree.delta.bootree_mode import BootreePlan
from bootree.delta.bootree_mode import Pair as _Pair
from bootree.delta.content import ContentInfo
from bootree.delta.partzstd import encode_zstd_part_chunks
from bootree.delta.rollsum import RollsumResult
from bootree.format.checksum import Checksum, to_raw
from bootree.format.delta import (
    LITTLE_ENDIAN,
    Compression,
    DeltaName,
    PartEntry,
    PartPayload,
    PartTables,
    Superblock,
    encode_part_chunks,
    xz_dict_size,
)
from bootree.format.deltaops import OpWriter
from bootree.format.objects import FileHeader, ObjectType

__all__ = [
    "MB",
    "DeltaOptions",
    "GenerateResult",
    "PairPlan",
    "PartAssembler",
    "emit_bootree",
    "emit_new",
    "emit_pair",
    "emit_whole",
]

log = logging.getLogger(__name__)

MB = 1000 * 1000  # libostree's "megabytes" for these options
#: liblzma's encoder memory is about this many times its dictionary (bt4 match finder).
_XZ_MEMORY_FACTOR = 12
#: Encoder memory allowed at once: two encoders of XZ_DICT_SIZE (both cores compress parts).
_XZ_MEMORY_BUDGET = 200 << 20
#: The xz dictionary of a part. libostree uses preset 8's 32 MiB (a ~370 MiB encoder); on the
#: corpus's 30 MB parts 8 MiB costs 6 kB of 15.9 MB (16 MiB: 0.3 kB) and lets two parts be
#: compressed at once in 200 MiB. Decoders need nothing else: the format is the same.
XZ_DICT_SIZE = 8 << 20
#: Memory of one level-19 zstd part encoder (8 MiB window, its tables, a worker's buffers).
_ZSTD_MEMORY = 100 << 20
#: Parts with more payload than this are zstd-compressed on several threads.
_ZSTD_MT = 8 << 20
#: bootree format: parts close at this payload size at the latest. The xz of a part runs on a
#: worker while the next fills, so only the last part's compression is left once planning
#: ends; with libostree's 32 MB, that was ~12 CPU s alone on one core. Parts of at most one
#: xz dictionary lose almost nothing (corpus: 28 MB in 3 or 4 parts, 3-10 kB more).
BOOTREE_PART_SIZE = 8 << 20


@dataclass(frozen=True, slots=True)
class DeltaOptions:
    """Generation parameters, with libostree's defaults (sizes in bytes)."""

    min_fallback_size: int = 4 * MB  # 0: no fallbacks (a self-contained delta)
    max_bsdiff_size: int = 128 * MB
    max_chunk_size: int = 32 * MB
    bsdiff: bool = True
    inline: bool = False
    endianness: int = LITTLE_ENDIAN
    compression: int = Compression.XZ
    threads: int = 2
    #: ``ostree`` (libostree-compatible) or ``bootree`` (bootree's own, smaller deltas).
    format: str = "ostree"
    #: libostree's choice for a pair that qualifies for both: rollsum, never tried against
    #: bsdiff (reproduces its operation streams, delta-vectors.sh; deltas are larger).
    prefer_rollsum: bool = False
    #: Extra string keys for the superblock's metadata, covered by its signature (an image
    #: delta names its layer map's digest there: :mod:`bootree.oci.deltaartifact`).
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class GenerateResult:
    """What a generation produced (the figures ``ostree static-delta generate`` prints)."""

    name: DeltaName
    superblock: Superblock
    path: Path
    new_metadata: int = 0
    new_regular: int = 0
    new_symlinks: int = 0
    modified: int = 0
    rollsum_objects: int = 0
    rollsum_bytes: int = 0
    bsdiff_objects: int = 0
    zstd_objects: int = 0
    recompressed_objects: int = 0
    #: bootree format: objects built partly from objects the same delta writes
    reads_own_objects: int = 0
    parts: list[PartEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PairPlan:
    pair: _Pair
    rollsum: RollsumResult | None  # use rollsum when set
    patch: bytes | None  # else bsdiff when set
    new_data: bytes | None  # literals for rollsum; whole content when neither wins


class PartAssembler:
    """Builds parts in object order, closing one when its payload would pass the chunk size."""

    def __init__(self, options: DeltaOptions, pool: ThreadPoolExecutor, staging: Path) -> None:
        self.options = options
        self.pool = pool
        self.staging = staging
        self.pending: deque[Future[tuple[Path, PartEntry]]] = deque()
        self.done: list[tuple[Path, PartEntry]] = []
        self._memory = threading.Condition()
        self._in_use = 0
        self.compression = options.compression
        self.part_size = options.max_chunk_size
        if options.format == "bootree":
            self.part_size = min(self.part_size, BOOTREE_PART_SIZE)
        self._new_part()

    def _new_part(self) -> None:
        self.tables = PartTables()
        self.payload = bytearray()
        self.ops = OpWriter()
        self.objects: list[tuple[ObjectType, Checksum]] = []
        self.usize = 0

    def reserve(self, nbytes: int) -> None:
        """Close the current part first if ``nbytes`` more payload would overflow it."""
        if self.objects and len(self.payload) + nbytes > self.part_size:
            self.flush()

    def add_payload(self, data: bytes | memoryview) -> int:
        off = len(self.payload)
        self.payload += data
        return off

    def add_object(self, otype: ObjectType, csum: Checksum, size: int) -> None:
        self.objects.append((otype, csum))
        self.usize += size

    def flush(self, *, allow_empty: bool = False) -> None:
        if not self.objects and not allow_empty:
            return
        part = PartPayload(tuple(self.tables.modes), tuple(self.tables.xattrs), self.payload, self.ops.to_bytes())
        index = len(self.done) + len(self.pending)
        objects, usize = tuple(self.objects), self.usize
        self._new_part()
        self.pending.append(self.pool.submit(self._write_part, index, part, objects, usize, self.compression))
        # Parts written (they are collected in order) are no longer held: at most ``threads``
        # parts wait for their compression.
        while self.pending and self.pending[0].done():
            self.done.append(self.pending.popleft().result())
        while sum(not f.done() for f in self.pending) > self.options.threads:
            next(f for f in self.pending if not f.done()).result()

    @contextlib.contextmanager
    def stored(self) -> Iterator[None]:
        """Objects emitted inside go to a part of their own, uncompressed, closed on leaving.

        For bootree-format objects whose payload is already compressed or random (a kernel, a
        zstd frame of one): xz finds nothing in them and would spend as long on them as on
        the rest. The part is numbered before the part being filled, which holds only
        objects emitted earlier: so only objects that read no new object of this delta may
        go here (they may be read by later ones: those come in later parts).
        """
        saved = (self.tables, self.payload, self.ops, self.objects, self.usize, self.compression)
        self._new_part()
        self.compression = Compression.NONE
        try:
            yield
            self.flush()
        finally:
            self.tables, self.payload, self.ops, self.objects, self.usize, self.compression = saved

    def _write_part(
        self, index: int, part: PartPayload, objects: tuple[tuple[ObjectType, Checksum], ...], usize: int,
        compression: int,
    ) -> tuple[Path, PartEntry]:
        dict_size = min(xz_dict_size(len(part.payload)), XZ_DICT_SIZE)
        # bootree's format compresses its parts with zstd (bootree.delta.partzstd), which the
        # client decodes ten times faster than xz for 0.7% more bytes.
        zstd = self.options.format == "bootree" and compression == Compression.XZ
        if zstd:
            need = _ZSTD_MEMORY
        else:
            need = _XZ_MEMORY_FACTOR * dict_size if compression == Compression.XZ else 0
        with self._memory:
            # Encoders of parts too big for the budget together run one after the other.
            self._memory.wait_for(lambda: self._in_use == 0 or self._in_use + need <= _XZ_MEMORY_BUDGET)
            self._in_use += need
        digest = hashlib.sha256()
        size = 0
        path = self.staging / f"{index}"
        try:
            # Compressed pieces go to the file as they come: neither the uncompressed
            # serialization nor the whole compressed part is ever held.
            with open(path, "xb") as f:
                if zstd:
                    chunks = encode_zstd_part_chunks(part, threads=self.options.threads if len(part.payload) > _ZSTD_MT else 0)
                else:
                    chunks = encode_part_chunks(part, compression, dict_size=dict_size)
                for chunk in chunks:
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        finally:
            with self._memory:
                self._in_use -= need
                self._memory.notify_all()
        log.debug("part %d: %d objects, %d bytes (%d uncompressed)", index, len(objects), size, usize)
        version = 1 if self.options.format == "bootree" else 0
        return path, PartEntry(digest.digest(), size, usize, objects, version)

    def finish(self) -> list[tuple[Path, PartEntry]]:
        # A delta always has a part, as libostree writes it: an empty one when nothing changed.
        self.flush(allow_empty=not self.done and not self.pending)
        while self.pending:
            self.done.append(self.pending.popleft().result())
        return self.done



#: Objects from this size on whose payload does not shrink go to stored parts (smaller ones
#: are not worth a part of their own).
_MIN_STORED = 1 << 20


def _incompressible(data: bytes) -> bool:
    """Whether ``data`` is large and fast zlib saves under 2% of three 64 KiB samples of it."""
    if len(data) < _MIN_STORED:
        return False
    step = 64 << 10
    samples = [data[i : i + step] for i in (0, len(data) // 2, len(data) - step)]
    return all(len(zlib.compress(s, 1)) > 0.98 * len(s) for s in samples)


def emit_whole(asm: PartAssembler, csum: Checksum, info: ContentInfo, data: bytes) -> None:
    """``S``: the object's content (or symlink target) straight from the payload."""
    header = info.header
    body = header.symlink_target.encode("utf-8", "surrogateescape") if header.is_symlink else data
    asm.reserve(len(body))
    mode_idx = asm.tables.mode_index(header.uid, header.gid, header.mode)
    xattr_idx = asm.tables.xattr_index(header.xattrs)
    off = asm.add_payload(body)
    asm.ops.splice_content(mode_idx, xattr_idx, len(body), off)
    asm.add_object(ObjectType.FILE, csum, 0 if header.is_symlink else len(body))


def emit_new(asm: PartAssembler, csum: Checksum, info: ContentInfo, data: bytes) -> None:
    """bootree format: :func:`emit_whole`, in a stored part when ``data`` does not compress."""
    if asm.compression == Compression.XZ and _incompressible(data):
        with asm.stored():
            emit_whole(asm, csum, info, data)
        return
    emit_whole(asm, csum, info, data)


def emit_pair(asm: PartAssembler, plan: PairPlan, stats: GenerateResult) -> None:
    pair = plan.pair
    header = pair.new_info.header
    size = pair.new_info.size
    if plan.rollsum is None and plan.patch is None:
        assert plan.new_data is not None
        emit_whole(asm, pair.new, pair.new_info, plan.new_data)
        return
    if plan.patch is not None:
        asm.reserve(32 + len(plan.patch))
        mode_idx = asm.tables.mode_index(header.uid, header.gid, header.mode)
        xattr_idx = asm.tables.xattr_index(header.xattrs)
        src = asm.add_payload(to_raw(pair.old))
        off = asm.add_payload(plan.patch)
        asm.ops.set_read_source(src)
        asm.ops.open(mode_idx, xattr_idx, size)
        asm.ops.bspatch(off, len(plan.patch))
        asm.ops.close()
        asm.ops.unset_read_source()
        asm.add_object(ObjectType.FILE, pair.new, size)
        stats.bsdiff_objects += 1
        return
    assert plan.rollsum is not None and plan.new_data is not None
    emit_rollsum(asm, pair.new, header, size, pair.old, plan.rollsum, plan.new_data)
    stats.rollsum_objects += 1
    stats.rollsum_bytes += plan.rollsum.matched_bytes


def emit_rollsum(
    asm: PartAssembler,
    csum: Checksum,
    header: FileHeader,
    size: int,
    source: Checksum,
    result: RollsumResult,
    data: bytes,
    *,
    gzip: bytes | None = None,
) -> None:
    """``o`` (or bootree's ``G`` with ``gzip`` parameters), chunk copies and literals, ``c``."""
    new = memoryview(data)
    inner = len(data)
    asm.reserve(32 + inner - result.matched_bytes + len(gzip or b""))
    mode_idx = asm.tables.mode_index(header.uid, header.gid, header.mode)
    xattr_idx = asm.tables.xattr_index(header.xattrs)
    src = asm.add_payload(to_raw(source))
    if gzip is None:
        asm.ops.open(mode_idx, xattr_idx, size)
    else:
        poff = asm.add_payload(gzip)
        asm.ops.open_recompressed(mode_idx, xattr_idx, size, inner, poff, len(gzip))
    pos = 0
    reading = False
    for m in result.matches:
        if m.new_offset > pos:
            if reading:
                asm.ops.unset_read_source()
                reading = False
            off = asm.add_payload(new[pos : m.new_offset])
            asm.ops.write(m.new_offset - pos, off)
        if not reading:
            if gzip is None:
                asm.ops.set_read_source(src)
            else:
                asm.ops.set_read_source_decompressed(src)
            reading = True
        asm.ops.write(m.length, m.old_offset)
        pos = m.new_offset + m.length
    if reading:
        asm.ops.unset_read_source()
    if pos < inner:
        off = asm.add_payload(new[pos:])
        asm.ops.write(inner - pos, off)
    asm.ops.close()
    asm.add_object(ObjectType.FILE, csum, size)


def emit_bootree(asm: PartAssembler, plan: BootreePlan, stats: GenerateResult) -> None:
    """One object of a bootree-format delta, the way its plan chose."""
    blob = plan.whole if plan.whole is not None else plan.zstd_frame
    if blob is not None and asm.compression == Compression.XZ and _incompressible(blob):
        with asm.stored():
            _emit_bootree(asm, plan, stats)
        return
    _emit_bootree(asm, plan, stats)


def _emit_bootree(asm: PartAssembler, plan: BootreePlan, stats: GenerateResult) -> None:
    pair = plan.pair
    header, size = pair.new_info.header, pair.new_info.size
    if plan.whole is not None:
        emit_whole(asm, pair.new, pair.new_info, plan.whole)
        return
    if plan.multi and plan.new_data is not None and plan.gzip is not None:
        emit_multi(asm, plan)
        stats.rollsum_objects += 1
        stats.rollsum_bytes += sum(m.length for m in plan.multi)
        stats.recompressed_objects += 1
        return
    if plan.rollsum is not None and plan.new_data is not None:
        params = plan.gzip.to_bytes() if plan.gzip is not None else None
        emit_rollsum(asm, pair.new, header, size, pair.old, plan.rollsum, plan.new_data, gzip=params)
        stats.rollsum_objects += 1
        stats.rollsum_bytes += plan.rollsum.matched_bytes
        stats.recompressed_objects += plan.gzip is not None
        return
    blob = plan.zstd_frame if plan.zstd_frame is not None else plan.patch
    assert blob is not None
    asm.reserve(32 + len(blob))
    mode_idx = asm.tables.mode_index(header.uid, header.gid, header.mode)
    xattr_idx = asm.tables.xattr_index(header.xattrs)
    src = asm.add_payload(to_raw(pair.old))
    off = asm.add_payload(blob)
    asm.ops.set_read_source(src)
    asm.ops.open(mode_idx, xattr_idx, size)
    if plan.zstd_frame is not None:
        asm.ops.zstd_patch(off, len(blob))
        stats.zstd_objects += 1
    else:
        asm.ops.bspatch(off, len(blob))
        stats.bsdiff_objects += 1
    asm.ops.close()
    asm.add_object(ObjectType.FILE, pair.new, size)


def emit_multi(asm: PartAssembler, plan: BootreePlan) -> None:
    """bootree's ``G``: a gzip member rebuilt from chunks of several sources plus literals."""
    assert plan.new_data is not None and plan.gzip is not None
    pair = plan.pair
    header, size = pair.new_info.header, pair.new_info.size
    new = memoryview(plan.new_data)
    inner = len(plan.new_data)
    params = plan.gzip.to_bytes()
    matched = sum(m.length for m in plan.multi)
    asm.reserve(32 * len(plan.sources) + inner - matched + len(params))
    mode_idx = asm.tables.mode_index(header.uid, header.gid, header.mode)
    xattr_idx = asm.tables.xattr_index(header.xattrs)
    offsets = [asm.add_payload(to_raw(c)) for c, _dec in plan.sources]
    poff = asm.add_payload(params)
    asm.ops.open_recompressed(mode_idx, xattr_idx, size, inner, poff, len(params))
    pos = 0
    current: int | None = None
    for m in plan.multi:
        if m.new_offset > pos:
            if current is not None:
                asm.ops.unset_read_source()
                current = None
            off = asm.add_payload(new[pos : m.new_offset])
            asm.ops.write(m.new_offset - pos, off)
        if current != m.source:
            if plan.sources[m.source][1]:
                asm.ops.set_read_source_decompressed(offsets[m.source])
            else:
                asm.ops.set_read_source(offsets[m.source])
            current = m.source
        asm.ops.write(m.length, m.old_offset)
        pos = m.new_offset + m.length
    if current is not None:
        asm.ops.unset_read_source()
    if pos < inner:
        off = asm.add_payload(new[pos:])
        asm.ops.write(inner - pos, off)
    asm.ops.close()
    asm.add_object(ObjectType.FILE, pair.new, size)
