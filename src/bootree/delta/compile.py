"""Generate a libostree-compatible static delta between two commits (``static-delta generate``).

Layer: delta. The choices are libostree 2022.7's (ostree-format.md §7.5), so ``ostree`` applies
what we write and sizes stay comparable:

* the delta carries every object reachable from ``to`` and not from ``from`` (a scratch delta:
  from nothing), except the ``to`` commit itself, which the superblock embeds;
* a new regular file whose name (or its part before the first ``.``) matches an old file of
  a size within ±30% is a *similar pair*: rolling-checksum matching when at least half its
  chunks are found in the old file (``o r w … R w c``), else bsdiff (``r o B c R``) when both
  fit ``max_bsdiff_size``;
* other new files larger than ``min_fallback_size`` are *fallbacks*: fetched whole from
  ``objects/``; everything else is spliced from the payload (``S``);
* parts are closed when their payload would pass ``max_chunk_size`` and xz-compressed.

One deliberate difference: bsdiff is skipped for a pair whose new file is incompressible
(already compressed or random, like a gzip'd initramfs or a kernel), shares almost nothing with
the old one at chunk level and is not an in-place edit of it (fewer than half its bytes equal
at the same offsets): bsdiff cannot win there, and it is the slowest step.

Work runs on both cores: pair matching, bsdiff and xz run in two worker threads (hashing,
numpy, bsdiff and liblzma release the GIL) while the main thread reads objects and assembles
operations. Memory stays bounded: parts are written to disk as they are closed, at most a few
pairs and parts are in flight, and no tree's contents are ever held whole.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bootree import _fs
from bootree.delta import bootree_mode
from bootree.delta.bootree_mode import BootreePlan
from bootree.delta.bootree_mode import Pair as _Pair
from bootree.delta.bsdiff import bsdiff
from bootree.delta.content import ContentInfo, content_info, load_content
from bootree.delta.rollsum import RollsumResult, match_chunks
from bootree.delta.store import publish_delta_dir
from bootree.errors import DeltaError
from bootree.format.checksum import Checksum, to_raw
from bootree.format.delta import (
    LITTLE_ENDIAN,
    Compression,
    DeltaName,
    FallbackEntry,
    PartEntry,
    PartPayload,
    PartTables,
    Superblock,
    encode_part,
    part_digest,
    xz_dict_size,
)
from bootree.format.deltaops import OpWriter
from bootree.format.gvariant import Variant
from bootree.format.objects import FileHeader, ObjectType
from bootree.repo import Repo

__all__ = ["DeltaOptions", "GenerateResult", "generate_delta"]

log = logging.getLogger(__name__)

MB = 1000 * 1000  # libostree's "megabytes" for these options
#: liblzma's encoder memory is about this many times its dictionary (bt4 match finder).
_XZ_MEMORY_FACTOR = 12
#: Encoder memory allowed at once: one preset-8 encoder, or two for parts up to 16 MiB.
_XZ_MEMORY_BUDGET = 400 << 20


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
class _PairPlan:
    pair: _Pair
    rollsum: RollsumResult | None  # use rollsum when set
    patch: bytes | None  # else bsdiff when set
    new_data: bytes | None  # literals for rollsum; whole content when neither wins


def _basename_keys(path: str) -> list[str]:
    base = path.rpartition("/")[2]
    keys = [base]
    stem = base.split(".", 1)[0]
    if stem and stem != base:
        keys.append(stem)
    return keys


def _incompressible(data: bytes) -> bool:
    """Whether a sample of ``data`` does not shrink under fast zlib (compressed or random)."""
    sample = data[: 1 << 20]
    return len(zlib.compress(sample, 1)) > 0.95 * len(sample)


def _aligned_share(old: bytes, new: bytes) -> float:
    """Share of bytes equal at the same offset (in-place edits: bsdiff's good case)."""
    n = min(len(old), len(new))
    if n == 0:
        return 0.0
    a = np.frombuffer(old, dtype=np.uint8, count=n)
    b = np.frombuffer(new, dtype=np.uint8, count=n)
    return float(np.count_nonzero(a == b)) / max(len(new), 1)


def _plan_pair(repo: Repo, pair: _Pair, options: DeltaOptions) -> _PairPlan:
    """Worker: decide between rollsum and bsdiff for one similar pair (libostree's order)."""
    old = load_content(repo, pair.old)
    new = load_content(repo, pair.new)
    result = match_chunks(old, new)
    if result.match_ratio >= 50:
        return _PairPlan(pair, result, None, new)
    fits = pair.old_info.size + pair.new_info.size <= options.max_bsdiff_size
    hopeless = result.match_ratio < 5 and _incompressible(new) and _aligned_share(old, new) < 0.5
    if options.bsdiff and fits and not hopeless:
        return _PairPlan(pair, None, bsdiff(old, new), None)
    return _PairPlan(pair, None, None, new)


class _PartAssembler:
    """Builds parts in object order, closing one when its payload would pass the chunk size."""

    def __init__(self, repo: Repo, options: DeltaOptions, pool: ThreadPoolExecutor, staging: Path) -> None:
        self.options = options
        self.pool = pool
        self.staging = staging
        self.pending: deque[Future[tuple[Path, PartEntry]]] = deque()
        self.done: list[tuple[Path, PartEntry]] = []
        self._memory = threading.Condition()
        self._in_use = 0
        self._new_part()

    def _new_part(self) -> None:
        self.tables = PartTables()
        self.payload = bytearray()
        self.ops = OpWriter()
        self.objects: list[tuple[ObjectType, Checksum]] = []
        self.usize = 0

    def reserve(self, nbytes: int) -> None:
        """Close the current part first if ``nbytes`` more payload would overflow it."""
        if self.objects and len(self.payload) + nbytes > self.options.max_chunk_size:
            self.flush()

    def add_payload(self, data: bytes | memoryview) -> int:
        off = len(self.payload)
        self.payload += data
        return off

    def add_object(self, otype: ObjectType, csum: Checksum, size: int) -> None:
        self.objects.append((otype, csum))
        self.usize += size

    def flush(self) -> None:
        if not self.objects:
            return
        part = PartPayload(tuple(self.tables.modes), tuple(self.tables.xattrs), bytes(self.payload), self.ops.to_bytes())
        index = len(self.done) + len(self.pending)
        objects, usize = tuple(self.objects), self.usize
        self._new_part()
        self.pending.append(self.pool.submit(self._write_part, index, part, objects, usize))
        while len(self.pending) > self.options.threads:
            self.done.append(self.pending.popleft().result())

    def _write_part(
        self, index: int, part: PartPayload, objects: tuple[tuple[ObjectType, Checksum], ...], usize: int
    ) -> tuple[Path, PartEntry]:
        need = _XZ_MEMORY_FACTOR * xz_dict_size(len(part.payload)) if self.options.compression == Compression.XZ else 0
        with self._memory:
            # Two big parts would need two preset-8 encoders (~370 MiB each): wait for room.
            self._memory.wait_for(lambda: self._in_use == 0 or self._in_use + need <= _XZ_MEMORY_BUDGET)
            self._in_use += need
        try:
            data = encode_part(part, self.options.compression)
        finally:
            with self._memory:
                self._in_use -= need
                self._memory.notify_all()
        path = self.staging / f"{index}"
        with open(path, "xb") as f:
            f.write(data)
        log.debug("part %d: %d objects, %d bytes (%d uncompressed)", index, len(objects), len(data), usize)
        version = 1 if self.options.format == "bootree" else 0
        return path, PartEntry(part_digest(data), len(data), usize, objects, version)

    def finish(self) -> list[tuple[Path, PartEntry]]:
        self.flush()
        while self.pending:
            self.done.append(self.pending.popleft().result())
        return self.done


def _new_objects(repo: Repo, from_commit: Checksum | None, to_commit: Checksum) -> list[tuple[ObjectType, Checksum]]:
    want = repo.reachable_objects([to_commit])
    have = repo.reachable_objects([from_commit]) if from_commit else set()
    keep = (ObjectType.DIR_TREE, ObjectType.DIR_META, ObjectType.FILE)
    new = [o for o in want - have if o[0] in keep]
    return sorted(new, key=lambda o: (o[0].number, o[1]))


def _paths(repo: Repo, commit: Checksum) -> Iterator[tuple[str, Checksum]]:
    for path, kind, csum, _meta in repo.walk_tree(commit):
        if kind == "f":
            yield path, csum


def _order_key(path: str) -> tuple[str, str, str]:
    """Emission order of whole files: by extension, then name, so similar files sit together
    in a part (xz finds more in a window of look-alike files than in checksum order)."""
    base = path.rpartition("/")[2]
    return (base.rpartition(".")[2] if "." in base else "", base, path)


def _find_pairs(
    repo: Repo, from_commit: Checksum, to_paths: dict[Checksum, str], infos: dict[Checksum, ContentInfo]
) -> list[_Pair]:
    """Similar pairs as libostree picks them: same basename (or stem), size within ±30%."""
    old_by_key: dict[str, list[tuple[Checksum, ContentInfo]]] = {}
    seen: set[Checksum] = set()
    for path, csum in _paths(repo, from_commit):
        if csum in seen:
            continue
        seen.add(csum)
        old = content_info(repo, csum)
        if old.header.is_symlink or old.size == 0 or not old.header.mode & stat.S_IROTH:
            continue
        for key in _basename_keys(path):
            old_by_key.setdefault(key, []).append((csum, old))
    pairs: list[_Pair] = []
    for csum, path in sorted(to_paths.items(), key=lambda cp: _order_key(cp[1])):
        info = infos.get(csum)
        if info is None or info.header.is_symlink or info.size == 0:
            continue
        if path.endswith((".xz", ".bz2")):
            continue
        best: tuple[Checksum, ContentInfo] | None = None
        for key in _basename_keys(path):
            for cand in old_by_key.get(key, []):
                if abs(cand[1].size - info.size) * 10 > 3 * info.size:
                    continue
                if best is None or abs(cand[1].size - info.size) < abs(best[1].size - info.size):
                    best = cand
            if best is not None:
                break
        if best is not None:
            pairs.append(_Pair(csum, info, best[0], best[1]))
    return pairs


def generate_delta(
    repo: Repo,
    to_commit: Checksum,
    *,
    from_commit: Checksum | None = None,
    options: DeltaOptions | None = None,
    filename: Path | None = None,
) -> GenerateResult:
    """Write the delta ``from_commit`` → ``to_commit`` into the repository (or to ``filename``).

    With ``filename`` the superblock is written there and parts beside it (``0``, ``1``, …),
    as ``ostree static-delta generate --filename`` does; with ``inline`` it is one file.

    Raises:
        ObjectMissing: if either commit or an object they reach is missing.
        DeltaError: if ``from_commit`` is partial.
    """
    options = options or DeltaOptions()
    if from_commit is not None and repo.is_partial(from_commit):
        raise DeltaError(f"commit {from_commit} is partial: it cannot be a delta's source")
    commit_bytes = repo.load_metadata(ObjectType.COMMIT, to_commit)
    name = DeltaName(from_commit, to_commit)
    result_stats = GenerateResult(name, Superblock(to_commit, commit_bytes), Path())
    new = _new_objects(repo, from_commit, to_commit)

    meta = [o for o in new if o[0] is not ObjectType.FILE]
    new_files = {c for t, c in new if t is ObjectType.FILE}
    infos = {c: content_info(repo, c) for c in sorted(new_files)}
    to_paths: dict[Checksum, str] = {}
    all_to_paths: set[str] = set()
    for path, csum in _paths(repo, to_commit):
        all_to_paths.add(path)
        if csum in new_files:
            to_paths.setdefault(csum, path)
    bootree = options.format == "bootree"
    pairs: list[_Pair] = []
    if from_commit is not None:
        if bootree:
            pairs = bootree_mode.find_pairs(repo, from_commit, to_paths, infos, all_to_paths)
            pairs.sort(key=lambda p: _order_key(to_paths[p.new]))
        else:
            pairs = _find_pairs(repo, from_commit, to_paths, infos)
    paired = {p.new for p in pairs}
    result_stats.modified = len(pairs)

    by_path = sorted(new_files - paired, key=lambda c: _order_key(to_paths.get(c) or str(c)))
    regular = [c for c in by_path if not infos[c].header.is_symlink]
    symlinks = [c for c in by_path if infos[c].header.is_symlink]
    fallback_ids = {
        c for c in regular if options.min_fallback_size and infos[c].size > options.min_fallback_size
    }
    ctx: bootree_mode.PairContext | None = None
    if bootree and from_commit is not None:
        ctx = bootree_mode.PairContext(
            {p: c for p, c in _paths(repo, to_commit)},
            {p: c for p, c in _paths(repo, from_commit)},
            frozenset(new_files - fallback_ids),
            frozenset(new_files),
        )
    result_stats.new_metadata = len(meta)
    result_stats.new_regular = len(regular) + len(pairs)
    result_stats.new_symlinks = len(symlinks)

    staging_root = (filename.parent if filename else repo.path / "tmp").resolve()
    _fs.makedirs(staging_root)
    staging = staging_root / _fs.temp_name(".delta-")
    staging.mkdir()
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.threads), thread_name_prefix="delta") as pool:
            asm = _PartAssembler(repo, options, pool, staging)
            for otype, csum in meta:
                data = repo.load_metadata(otype, csum)
                asm.reserve(len(data))
                off = asm.add_payload(data)
                asm.ops.splice_meta(len(data), off)
                asm.add_object(otype, csum, len(data))
            # Similar pairs, a few in flight at a time (each holds two files in memory).
            window: deque[Future[_PairPlan | BootreePlan]] = deque()
            last: list[BootreePlan] = []  # plans reading objects this delta writes: emitted at the end

            def emit(plan: _PairPlan | BootreePlan) -> None:
                if isinstance(plan, BootreePlan):
                    if plan.reads_new:
                        last.append(plan)
                    else:
                        _emit_bootree(asm, plan, result_stats)
                else:
                    _emit_pair(asm, plan, result_stats)

            for pair in pairs:
                if ctx is not None:
                    window.append(pool.submit(bootree_mode.plan_pair, repo, pair, ctx))
                else:
                    window.append(pool.submit(_plan_pair, repo, pair, options))
                if len(window) >= 2 * max(1, options.threads):
                    emit(window.popleft().result())
            while window:
                emit(window.popleft().result())
            for csum in regular:
                if csum not in fallback_ids:
                    _emit_whole(asm, csum, infos[csum], load_content(repo, csum))
            for csum in symlinks:
                _emit_whole(asm, csum, infos[csum], b"")
            result_stats.reads_own_objects = len(last)
            for plan in last:
                asm.flush()  # its sources are in earlier parts, published before it runs
                _emit_bootree(asm, plan, result_stats)
            parts = asm.finish()
        fallbacks = [
            FallbackEntry(ObjectType.FILE, c, infos[c].storage_size, infos[c].size) for c in sorted(fallback_ids)
        ]
        result_stats.parts = [p for _, p in parts]
        superblock = Superblock.build(
            to_commit=to_commit,
            commit=commit_bytes,
            parts=result_stats.parts,
            fallbacks=fallbacks,
            from_commit=from_commit,
            timestamp=int(time.time()),
            inline_parts=[path.read_bytes() for path, _ in parts] if options.inline else (),
            commitmeta=repo.read_commitmeta(to_commit),
            endianness=options.endianness,
            user_metadata=[(bootree_mode.FORMAT_KEY, Variant("u", bootree_mode.FORMAT_VERSION))] if bootree else (),
        )
        result_stats.superblock = superblock
        sb_path = staging / "superblock"
        with open(sb_path, "xb") as f:
            f.write(superblock.to_bytes())
        files = [] if options.inline else [(str(i), path) for i, (path, _) in enumerate(parts)]
        files.append(("superblock", sb_path))
        if filename is None:
            result_stats.path = publish_delta_dir(repo, name, files, root=bootree_mode.ROOT if bootree else "deltas")
        else:
            _publish_file(filename, files, fsync=repo.fsync)
            result_stats.path = filename
    finally:
        _fs.rmtree(staging)
    return result_stats


def _publish_file(filename: Path, files: list[tuple[str, Path]], *, fsync: bool) -> None:
    """``--filename``: parts beside the superblock file, the superblock renamed last."""
    for fname, src in files:
        target = filename if fname == "superblock" else filename.parent / fname
        os.chmod(src, 0o644)
        if fsync:
            fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.rename(src, target)
    if fsync:
        _fs.fsync_dir(filename.parent)


def _emit_whole(asm: _PartAssembler, csum: Checksum, info: ContentInfo, data: bytes) -> None:
    """``S``: the object's content (or symlink target) straight from the payload."""
    header = info.header
    body = header.symlink_target.encode("utf-8", "surrogateescape") if header.is_symlink else data
    asm.reserve(len(body))
    mode_idx = asm.tables.mode_index(header.uid, header.gid, header.mode)
    xattr_idx = asm.tables.xattr_index(header.xattrs)
    off = asm.add_payload(body)
    asm.ops.splice_content(mode_idx, xattr_idx, len(body), off)
    asm.add_object(ObjectType.FILE, csum, 0 if header.is_symlink else len(body))


def _emit_pair(asm: _PartAssembler, plan: _PairPlan, stats: GenerateResult) -> None:
    pair = plan.pair
    header = pair.new_info.header
    size = pair.new_info.size
    if plan.rollsum is None and plan.patch is None:
        assert plan.new_data is not None
        _emit_whole(asm, pair.new, pair.new_info, plan.new_data)
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
    _emit_rollsum(asm, pair.new, header, size, pair.old, plan.rollsum, plan.new_data)
    stats.rollsum_objects += 1
    stats.rollsum_bytes += plan.rollsum.matched_bytes


def _emit_rollsum(
    asm: _PartAssembler,
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


def _emit_bootree(asm: _PartAssembler, plan: BootreePlan, stats: GenerateResult) -> None:
    """One object of a bootree-format delta, the way its plan chose."""
    pair = plan.pair
    header, size = pair.new_info.header, pair.new_info.size
    if plan.whole is not None:
        _emit_whole(asm, pair.new, pair.new_info, plan.whole)
        return
    if plan.multi and plan.new_data is not None and plan.gzip is not None:
        _emit_multi(asm, plan)
        stats.rollsum_objects += 1
        stats.rollsum_bytes += sum(m.length for m in plan.multi)
        stats.recompressed_objects += 1
        return
    if plan.rollsum is not None and plan.new_data is not None:
        params = plan.gzip.to_bytes() if plan.gzip is not None else None
        _emit_rollsum(asm, pair.new, header, size, pair.old, plan.rollsum, plan.new_data, gzip=params)
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


def _emit_multi(asm: _PartAssembler, plan: BootreePlan) -> None:
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
