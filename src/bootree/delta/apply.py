"""Apply a static delta into a repository transaction (``static-delta apply-offline``, pulls).

Layer: delta. Everything a delta says is checked before it is believed, because its bytes come
from the network or a USB stick:

* each part's size and SHA-256 must match the superblock before anything in it is used (a part
  given in pieces, :func:`check_part_stream`, is hashed and decompressed as it is read, the
  decompression capped, and checked at its end), and its operations are validated as a whole
  against its object list and payload (:func:`bootree.format.deltaops.decode_operations`)
  before one runs;
* every object is written through the transaction's verified writes: its checksum is computed
  from the bytes produced and must equal the name the part gives it (a wrong bsdiff, a wrong
  splice or a wrong fallback fails the whole delta);
* the embedded commit must hash to the superblock's ``to``; at the end every object the commit
  reaches must be present, or nothing is published.

Parts are loaded, verified and decompressed one ahead in a worker thread (liblzma and hashlib
release the GIL) while the current one executes, so both cores work. A compatible delta reads
each old object once: only bootree's format, which returns to its sources, caches them. For
bootree's format the critical path is kept short: old objects read decompressed (``U``) are
loaded and decompressed on the worker pool as soon as their part is decoded, new objects a
later operation of the same part reads are kept in memory when written (no flush and re-read
through the repository), a segmented gzip object is compressed piece by piece while its
contents are still being assembled (:mod:`bootree.delta.segmented`), and the completeness
walk runs while the last recompressions finish.
"""

from __future__ import annotations

import hashlib
import logging
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from bootree.delta.bsdiff import bspatch
from bootree.delta.content import load_content
from bootree.delta.partzstd import decode_any_part, decode_any_part_stream
from bootree.delta.recompress import decompress, recompress
from bootree.delta.segmented import SegmentedGzip
from bootree.errors import ChecksumMismatch, DeltaError, DeltaFormatError, ObjectMissing
from bootree.format.checksum import Checksum, from_raw
from bootree.format.delta import (
    BOOTREE_PREFETCH_KEY,
    MAX_PREFETCH_HINTS,
    PartEntry,
    PartPayload,
    Superblock,
    part_digest,
)
from bootree.format.deltaops import (
    Bspatch,
    Close,
    Open,
    Operation,
    SetReadSource,
    Splice,
    UnsetReadSource,
    Write,
    ZstdPatch,
    decode_operations,
)
from bootree.format.objects import Commit, DirTree, FileHeader, ObjectType
from bootree.format.recompress import GzipParams, Params, parse_params
from bootree.format.verified import VerifiedMetadata
from bootree.repo import Repo, Transaction

__all__ = ["ApplyResult", "PartLoader", "apply_delta", "check_part", "check_part_stream", "part_size_limit"]

log = logging.getLogger(__name__)

#: Largest decompressed read source (``U``) accepted.
_MAX_INNER = 1 << 30
#: Recompressions of contents up to this size run on the part loader's thread.
_LIGHT_RECOMPRESS = 1 << 20
#: Read sources kept in memory at once (bootree's format; a compatible part keeps the last one).
_SOURCE_CACHE = 192 << 20

#: Loads part ``index`` (described by the entry): its bytes, or an iterator of its pieces (read
#: as they are consumed, ending at most one byte past the declared size); may raise FetchError
#: or OSError.
PartLoader = Callable[[int, PartEntry], "bytes | Iterator[bytes]"]


@dataclass(slots=True)
class ApplyResult:
    """What applying wrote: the ``to`` commit, and counts of objects and parts."""

    commit: Checksum
    objects_written: int = 0
    parts_applied: int = 0
    parts_skipped: int = 0
    #: the dirtrees the delta wrote (staged, not yet readable from the repository), by checksum
    dirtrees: dict[Checksum, bytes] = field(default_factory=dict)


def part_size_limit(entry: PartEntry) -> int:
    """The most a part may decompress to: its objects, plus patches' and tables' overhead."""
    return 4 * entry.uncompressed_size + (16 << 20)


def check_part(index: int, entry: PartEntry, data: bytes) -> PartPayload:
    """Verify a part file against its superblock entry and decode it.

    Raises:
        DeltaFormatError: for a size or digest mismatch, or an undecodable part.
    """
    if len(data) != entry.size:
        raise DeltaFormatError(f"delta part {index} is {len(data)} bytes, the superblock says {entry.size}")
    if part_digest(data) != entry.checksum:
        raise DeltaFormatError(f"delta part {index} has the wrong checksum")
    return decode_any_part(data, version=entry.version, max_size=part_size_limit(entry))


class _Counted:
    """The pieces of a part, stopped one byte past its declared size, hashed and counted."""

    def __init__(self, chunks: Iterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._left = limit
        self.size = 0
        self._hash = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self._left <= 0:
                return
            chunk = chunk[: self._left]
            self._left -= len(chunk)
            self.size += len(chunk)
            self._hash.update(chunk)
            yield chunk

    def digest(self) -> bytes:
        """The SHA-256 of every piece, the ones not consumed yet included."""
        for _chunk in self:
            pass
        return self._hash.digest()


def check_part_stream(index: int, entry: PartEntry, chunks: Iterator[bytes]) -> PartPayload:
    """:func:`check_part` of a part given in pieces, hashed and decompressed as they come.

    Nothing in the part is used before its size and digest match (the decompression is capped
    by :func:`part_size_limit` meanwhile); a part that fails to decode is still reported by
    its size or digest first, as :func:`check_part` reports it. Reading stops one byte past the
    declared size, so a longer file is refused without being read whole.

    Raises:
        DeltaFormatError: for a size or digest mismatch, or an undecodable part.
    """
    counted = _Counted(chunks, entry.size + 1)
    part: PartPayload | None = None
    error: DeltaFormatError | None = None
    try:
        part = decode_any_part_stream(counted, version=entry.version, max_size=part_size_limit(entry))
    except DeltaFormatError as exc:
        error = exc
    digest = counted.digest()
    if counted.size != entry.size:
        raise DeltaFormatError(f"delta part {index} is {counted.size} bytes, the superblock says {entry.size}")
    if digest != entry.checksum:
        raise DeltaFormatError(f"delta part {index} has the wrong checksum")
    if error is not None:
        raise error
    assert part is not None
    return part


def _header(part: PartPayload, mode_idx: int, xattr_idx: int, target: str = "") -> FileHeader:
    uid, gid, mode = part.modes[mode_idx]
    try:
        return FileHeader(uid, gid, mode, 0, target, part.xattrs[xattr_idx])
    except DeltaFormatError:
        raise
    except Exception as exc:  # FormatError from FileHeader's own checks
        raise DeltaFormatError(f"delta part has an invalid file mode or xattrs: {exc}") from exc


@dataclass(slots=True)
class _Shared:
    """What the parts' runners of one delta share."""

    workers: ThreadPoolExecutor
    #: the part loader's thread, mostly idle: it takes small recompressions, which would
    #: otherwise queue behind a large object's pieces and finish after them
    light: ThreadPoolExecutor
    #: content objects written so far in this delta
    content_written: list[Checksum] = field(default_factory=list)
    #: recompressions in flight, and the objects they write
    recompressing: list[Future[None]] = field(default_factory=list)
    pending: set[Checksum] = field(default_factory=set)
    #: old objects' decompressed contents being loaded on the worker pool
    prefetched: dict[Checksum, Future[bytes]] = field(default_factory=dict)
    #: the dirtrees written, parsed (the completeness walk reads them)
    trees: dict[Checksum, DirTree] = field(default_factory=dict)


def _load_decompressed(repo: Repo, csum: Checksum) -> bytes:
    return decompress(load_content(repo, csum), max_size=_MAX_INNER)


def _start_prefetch(repo: Repo, shared: _Shared, csum: Checksum) -> None:
    """Decompress the old object ``csum`` on the worker pool, once (absent: nothing to load)."""
    if csum not in shared.prefetched and repo.has_object(ObjectType.FILE, csum):
        shared.prefetched[csum] = shared.workers.submit(_load_decompressed, repo, csum)


def _prefetch_hinted(repo: Repo, superblock: Superblock, shared: _Shared) -> None:
    """Start decompressing the old objects the superblock says its first part reads (a hint:
    what the operations read is still what they name, and a wrong hint only costs work)."""
    hint = superblock.get(BOOTREE_PREFETCH_KEY)
    if not isinstance(hint, (bytes, bytearray)) or len(hint) % 32 or len(hint) > 32 * MAX_PREFETCH_HINTS:
        return
    for start in range(0, len(hint), 32):
        _start_prefetch(repo, shared, from_raw(bytes(hint[start : start + 32])))


class _PartRunner:
    """Executes one decoded part's operations into a transaction."""

    def __init__(
        self, repo: Repo, txn: Transaction, index: int, entry: PartEntry, part: PartPayload, shared: _Shared,
    ) -> None:
        self.repo = repo
        self.txn = txn
        self.index = index
        self.entry = entry
        self.part = part
        self.payload = memoryview(part.payload)
        self.written = 0
        #: dirtrees this part wrote, by checksum: read back by the completeness check
        self.dirtrees: dict[Checksum, bytes] = {}
        self.shared = shared
        self.content_written = shared.content_written
        self.workers = shared.workers
        self.recompressing = shared.recompressing
        self._sources: OrderedDict[tuple[Checksum, bool], bytes] = OrderedDict()
        self._cached = 0
        self._cache_limit = _SOURCE_CACHE if entry.version == 1 else 0
        #: bootree's format: objects this part reads as sources, and the contents of those it
        #: wrote itself (kept instead of being flushed, published and read back)
        self._reads: set[Checksum] = set()
        self._kept: dict[Checksum, bytes] = {}

    def prefetch(self, ops: Sequence[Operation]) -> None:
        """Start loading what this part reads: decompressed old objects on the worker pool
        (the slow gunzip of an old initramfs leaves the critical path)."""
        if self.entry.version != 1:
            return
        for op in ops:
            if isinstance(op, SetReadSource):
                csum = from_raw(bytes(self.payload[op.offset : op.offset + 32]))
                self._reads.add(csum)
                if op.decompressed:
                    _start_prefetch(self.repo, self.shared, csum)

    def _prefetched(self, csum: Checksum) -> bytes | None:
        future = self.shared.prefetched.pop(csum, None)
        if future is None or future.cancel():  # not started: loaded here, not behind other work
            return None
        try:
            return future.result()
        except ObjectMissing:
            return None

    def _source_data(self, csum: Checksum, decompressed: bool = False) -> bytes:
        """An old object's content (``decompressed``: its decompressed content), cached.

        A rebuilt initramfs switches between its old self and the tree's files many times: the
        cache keeps recently used sources up to :data:`_SOURCE_CACHE` bytes, so each is read
        (and decompressed) once.
        """
        key = (csum, decompressed)
        cache = self._sources
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        prefetched = self._prefetched(csum) if decompressed else None
        if prefetched is not None:
            return self._cache(key, prefetched)
        data = self._kept.get(csum)
        if data is not None:
            if decompressed:
                data = decompress(data, max_size=_MAX_INNER)
            return self._cache(key, data)
        try:
            data = load_content(self.repo, csum)
        except ObjectMissing as exc:
            # Written earlier by this delta (bootree's format reads its own new objects), maybe
            # by a recompression still in flight: wait for those, then publish what is
            # complete so it can be read, as a pull does early.
            self.drain()
            if not self.txn.has_object(ObjectType.FILE, csum):
                raise DeltaError(f"delta reads object {csum}, which this repository does not have") from exc
            self.txn.publish_early(ObjectType.FILE, dict.fromkeys([*self.content_written, csum]))
            data = load_content(self.repo, csum)
        if decompressed:
            data = decompress(data, max_size=_MAX_INNER)
        return self._cache(key, data)

    def _cache(self, key: tuple[Checksum, bool], data: bytes) -> bytes:
        cache = self._sources
        cache[key] = data
        self._cached += len(data)
        while self._cached > self._cache_limit and len(cache) > 1:
            _k, dropped = cache.popitem(last=False)
            self._cached -= len(dropped)
        return data

    def run(self, ops: Sequence[Operation]) -> None:
        objects = self.entry.objects
        source: tuple[Checksum, bool] | None = None
        i = 0
        while i < len(ops):
            op = ops[i]
            if isinstance(op, Splice):
                otype, csum = objects[op.obj]
                self._splice(otype, csum, op, self.payload[op.offset : op.offset + op.length])
            elif isinstance(op, SetReadSource):
                source = (from_raw(bytes(self.payload[op.offset : op.offset + 32])), op.decompressed)
            elif isinstance(op, UnsetReadSource):
                source = None
            elif isinstance(op, Open):
                end = next(j for j in range(i, len(ops)) if isinstance(ops[j], Close))
                self._build(op, ops[i + 1 : end], source)
                i = end
                source = None  # close unsets the read source
            i += 1

    def _splice(self, otype: ObjectType, csum: Checksum, op: Splice, view: memoryview) -> None:
        if self.txn.has_object_indexed(otype, csum):
            return
        if otype is not ObjectType.FILE:
            data = bytes(view)
            verified = VerifiedMetadata.parse(otype, data, csum)
            self.txn.write_metadata(verified)
            if otype is ObjectType.DIR_TREE:
                assert isinstance(verified.value, DirTree)
                self.dirtrees[csum] = data
                self.shared.trees[csum] = verified.value
            self.written += 1
            return
        assert op.mode_idx is not None and op.xattr_idx is not None
        mode = self.part.modes[op.mode_idx][2]
        if stat.S_ISLNK(mode):
            try:
                target = bytes(view).decode("utf-8", "surrogateescape")
            except UnicodeDecodeError as exc:  # pragma: no cover - surrogateescape accepts all bytes
                raise DeltaFormatError("delta symlink target is not text") from exc
            self.txn.write_file(_header(self.part, op.mode_idx, op.xattr_idx, target), None, expected=csum)
            self.content_written.append(csum)
        else:
            # Hashed and written straight from the decompressed part: no copy of the object.
            self._write(_header(self.part, op.mode_idx, op.xattr_idx), len(view), csum, [view])
            if csum in self._reads:
                self._kept[csum] = bytes(view)
        self.written += 1

    def _build(self, op: Open, body: Sequence[Operation], source: tuple[Checksum, bool] | None) -> None:
        _otype, csum = self.entry.objects[op.obj]
        if self.txn.has_object_indexed(ObjectType.FILE, csum):
            return  # libostree makes o/w/B no-ops for an object already present
        header = _header(self.part, op.mode_idx, op.xattr_idx)
        chunks: Iterable[bytes] = self._chunks(op, body, source)
        if op.inner_size is not None:  # bootree's G: the writes are the uncompressed contents
            if op.inner_size > _MAX_INNER:
                raise DeltaFormatError(f"delta object {csum} declares {op.inner_size} bytes of contents")
            params = parse_params(bytes(self.payload[op.params_offset : op.params_offset + op.params_length]))
            # Compressing is the slow part (zlib releases the GIL): a worker does it and the
            # write while the operations go on; ``drain`` waits before anything reads it. A
            # segmented gzip object's pieces go to both workers as its contents fill in.
            if isinstance(params, GzipParams) and params.segments:
                rebuild = SegmentedGzip(
                    self.txn, header, op.size, csum, params, op.inner_size, self.workers, self.content_written.append
                )
                try:
                    for chunk in chunks:
                        rebuild.add(chunk)
                except BaseException:
                    rebuild.abort()
                    raise
                self.recompressing.extend(rebuild.close())
            else:
                inner = b"".join(chunks)
                pool = self.shared.light if len(inner) <= _LIGHT_RECOMPRESS else self.workers
                self.recompressing.append(pool.submit(self._recompress, header, op.size, csum, inner, params))
            self.shared.pending.add(csum)
            self.written += 1
            return
        if csum in self._reads:  # read back by a later operation: kept once verified
            chunks = [b"".join(chunks)]
        self._write(header, op.size, csum, chunks)
        self.written += 1

    def _write(self, header: FileHeader, size: int, csum: Checksum, chunks: Iterable[bytes | memoryview]) -> None:
        with self.txn.content_writer(header, size, csum) as writer:
            for chunk in chunks:
                writer.write(chunk)
            writer.finish()
        self.content_written.append(csum)
        if csum in self._reads and isinstance(chunks, list) and len(chunks) == 1 and isinstance(chunks[0], bytes):
            self._kept[csum] = chunks[0]

    def _recompress(self, header: FileHeader, size: int, csum: Checksum, inner: bytes, params: Params) -> None:
        rebuilt = recompress(inner, params)
        if len(rebuilt) != size:
            raise DeltaError(f"recompressing object {csum} gave {len(rebuilt)} bytes, not {size}")
        self._write(header, size, csum, [rebuilt])

    def drain(self) -> None:
        """Wait for the recompressions in flight (raising the first failure)."""
        while self.recompressing:
            self.recompressing.pop(0).result()

    def _chunks(self, op: Open, body: Sequence[Operation], source: tuple[Checksum, bool] | None) -> Iterator[bytes]:
        for sub in body:
            if isinstance(sub, SetReadSource):
                source = (from_raw(bytes(self.payload[sub.offset : sub.offset + 32])), sub.decompressed)
            elif isinstance(sub, UnsetReadSource):
                source = None
            elif isinstance(sub, Write):
                if sub.from_source:
                    assert source is not None
                    old = self._source_data(*source)
                    if sub.offset + sub.length > len(old):
                        raise DeltaFormatError(
                            f"delta operation w reads {sub.length} bytes at {sub.offset} past its source ({len(old)})"
                        )
                    yield old[sub.offset : sub.offset + sub.length]
                else:
                    yield bytes(self.payload[sub.offset : sub.offset + sub.length])
            elif isinstance(sub, Bspatch):
                assert source is not None
                patch = bytes(self.payload[sub.offset : sub.offset + sub.length])
                yield bspatch(self._source_data(*source), patch, op.budget)
            elif isinstance(sub, ZstdPatch):
                assert source is not None
                frame = bytes(self.payload[sub.offset : sub.offset + sub.length])
                yield zstd_patch_apply(self._source_data(*source), frame, op.budget)


def _decode(index: int, entry: PartEntry, loader: PartLoader) -> tuple[PartPayload, list[Operation]]:
    if entry.version not in (0, 1):
        raise DeltaFormatError(f"delta part {index} has unknown version {entry.version}")
    data = loader(index, entry)
    if isinstance(data, (bytes, bytearray, memoryview)):
        part = check_part(index, entry, bytes(data))
    else:
        part = check_part_stream(index, entry, data)
    ops = decode_operations(
        part.operations, entry.objects, payload_size=len(part.payload), n_modes=len(part.modes),
        n_xattrs=len(part.xattrs), extensions=entry.version == 1,
    )
    return part, ops


def zstd_patch_apply(old: bytes, frame: bytes, size: int) -> bytes:
    """bootree's ``Z``: decompress a zstd frame whose dictionary is the old object's content.

    Raises:
        DeltaFormatError: for a corrupt frame or one that does not produce ``size`` bytes.
    """
    import zstandard

    try:
        dict_data = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        out = zstandard.ZstdDecompressor(dict_data=dict_data, max_window_size=1 << 31).decompress(
            frame, max_output_size=size
        )
    except zstandard.ZstdError as exc:
        raise DeltaFormatError(f"corrupt zstd patch in delta: {exc}") from exc
    if len(out) != size:
        raise DeltaFormatError(f"zstd patch produced {len(out)} bytes, not {size}")
    return out


def apply_delta(
    repo: Repo,
    txn: Transaction,
    superblock: Superblock,
    load_part: PartLoader,
    *,
    fetch_fallbacks: Callable[[Sequence[tuple[ObjectType, Checksum]]], None] | None = None,
    wait_fallbacks: Callable[[], None] | None = None,
) -> ApplyResult:
    """Write every object of the delta and its ``to`` commit into ``txn``.

    ``load_part`` gives each part's file bytes (``superblock.inline_part`` for inline ones).
    Fallback objects must already be present, or ``fetch_fallbacks`` writes them into ``txn``
    (or only starts fetching them: then ``wait_fallbacks``, called after the parts, finishes).
    The caller commits the transaction (and sets refs); an exception leaves it to be aborted.

    Raises:
        DeltaError: if the ``from`` commit or a fallback object is missing, or objects are
            missing after the delta ran.
        DeltaFormatError: for a part that fails its checks.
        ChecksumMismatch: for an object, or the commit, that does not hash to its name.
    """
    result = ApplyResult(superblock.to_commit)
    actual = Checksum(hashlib.sha256(superblock.commit).hexdigest())
    if actual != superblock.to_commit:
        raise ChecksumMismatch(superblock.to_commit, actual, "delta commit")
    dirtrees: dict[Checksum, bytes] = {}
    if superblock.from_commit is not None and not repo.has_object(ObjectType.COMMIT, superblock.from_commit):
        raise DeltaError(f"the delta's source commit {superblock.from_commit} is not in this repository")
    missing = [(f.otype, f.checksum) for f in superblock.fallbacks if not txn.has_object(f.otype, f.checksum)]
    if missing:
        if fetch_fallbacks is None:
            raise DeltaError(
                f"the delta needs {len(missing)} fallback objects that this repository lacks (first {missing[0][1]})",
                hint="regenerate it with --min-fallback-size=0 for offline use",
            )
        fetch_fallbacks(missing)
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-part") as pool,
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="delta-gzip") as workers,
    ):
        shared = _Shared(workers, pool)
        _prefetch_hinted(repo, superblock, shared)
        todo = [
            (i, e) for i, e in enumerate(superblock.parts) if not all(txn.has_object_indexed(t, c) for t, c in e.objects)
        ]
        result.parts_skipped = len(superblock.parts) - len(todo)
        ahead: Future[tuple[PartPayload, list[Operation]]] | None = None
        for n, (index, entry) in enumerate(todo):
            current = ahead.result() if ahead is not None else _decode(index, entry, load_part)
            ahead = pool.submit(_decode, *todo[n + 1], load_part) if n + 1 < len(todo) else None
            runner = _PartRunner(repo, txn, index, entry, current[0], shared)
            runner.prefetch(current[1])
            runner.run(current[1])
            dirtrees.update(runner.dirtrees)
            result.objects_written += runner.written
            result.parts_applied += 1
        for future in shared.prefetched.values():
            future.cancel()
        if wait_fallbacks is not None:
            wait_fallbacks()
        txn.write_metadata(VerifiedMetadata.parse(ObjectType.COMMIT, superblock.commit, superblock.to_commit))
        meta = superblock.commitmeta
        if meta is not None:
            txn.write_commitmeta(superblock.to_commit, meta)
        # The walk runs while the last recompressions finish: their objects count as present
        # here, and each is verified and staged by its writer (or its failure raised) below.
        _check_complete(repo, txn, superblock, shared.trees, shared.pending)
        if shared.recompressing:
            # Content objects already verified go in now, while the last recompressions run,
            # instead of all being renamed after them (a pull publishes early the same way).
            txn.publish_early(ObjectType.FILE, list(shared.content_written))
        while shared.recompressing:
            shared.recompressing.pop(0).result()
    for csum in shared.pending:
        if not txn.has_object_indexed(ObjectType.FILE, csum):
            raise DeltaError(f"after the delta, file object {csum} is missing")
    result.dirtrees = dirtrees
    return result


def _check_complete(
    repo: Repo, txn: Transaction, superblock: Superblock, staged: dict[Checksum, DirTree], pending: set[Checksum],
) -> None:
    """Every object the new commit reaches must now exist (staged or published), or be
    ``pending`` (being recompressed)."""
    commit = Commit.from_bytes(superblock.commit)
    stack = [(commit.root_tree, commit.root_meta)]
    seen: set[Checksum] = set()
    while stack:
        tree, meta = stack.pop()
        if not txn.has_object_indexed(ObjectType.DIR_META, meta):
            raise DeltaError(f"after the delta, dirmeta {meta} is missing")
        if tree in seen:
            continue
        seen.add(tree)
        if tree in staged:
            dirtree = staged[tree]
        elif repo.has_object(ObjectType.DIR_TREE, tree):
            dirtree = repo.read_dirtree(tree)
        else:
            raise DeltaError(f"after the delta, dirtree {tree} is missing")
        for _name, csum in dirtree.files:
            if csum not in pending and not txn.has_object_indexed(ObjectType.FILE, csum):
                raise DeltaError(f"after the delta, file object {csum} is missing")
        stack.extend((t, m) for _n, t, m in dirtree.dirs)
