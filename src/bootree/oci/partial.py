"""Partial pulls of zstd:chunked layers: fetch only the files the repository lacks.

Layer: oci. For a layer whose descriptor carries the zstd:chunked annotations
(:mod:`bootree.oci.zchunked`), :meth:`PartialFetcher.fetch` rebuilds the layer's uncompressed
tar on disk instead of downloading the blob:

1. one ``Range`` request fetches the TOC, which must match the ``manifest-checksum``
   annotation (the manifest, and so the annotation, is digest-verified); from it alone the
   fetcher knows which files are local and what a rebuild would fetch, and fetches the whole
   blob instead when that is most of it (:data:`WHOLE_BLOB_SHARE`);
2. the tar-split records give the exact tar: raw header and padding bytes, written where they
   belong, and each regular file's name and size, whose content the TOC locates (``offset`` ..
   ``endOffset``, one or more zstd frames) and names by digest. A layer bootree wrote (its
   :data:`~bootree.oci.zchunked.TAR_HEADERS_KEY` annotation) has its records derived from the
   TOC (:mod:`bootree.oci.zchunktar`) and the rebuilt tar checked against the diff_id here; the
   tar-split (checked against the TOC's ``tarSplitDigest``) is fetched only for other layers, or
   when the derived tar does not match;
3. a file's content is taken from the repository when a local object should hold it: for an
   ostree-ext layer, the object its path names (``sysroot/ostree/repo/objects/xx/….file``, or a
   metadata object); for a plain layer, the file at the same path in an image stored earlier.
   The local bytes are hashed and used only if they match the TOC digest;
4. the other files' frames are fetched with ``Range`` requests (ranges closer than
   :data:`GAP` bytes coalesced, :data:`WORKERS` at once), decompressed and checked against their
   TOC digest as they stream; a mismatch stops the import with :class:`LayerError`.

The rebuilt tar then goes through the same import as a downloaded blob, which checks it against
the config's diff_id: the partial pull is verified as completely as a full one (every byte of
the tar), except the compressed blob's own digest, which was never downloaded. When the
annotations are missing or malformed, the registry ignores ``Range``, the TOC has no tar-split
digest, or most of the layer would be fetched anyway, :meth:`fetch` returns false and the
caller downloads the whole blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootree.errors import LayerError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.objects import DirTree
from bootree.format.oci import Descriptor, digest_of
from bootree.oci.reference import IMAGE_REF_PREFIX
from bootree.oci.registry import BytesFn, RegistryClient
from bootree.oci.source import ImageSource, RegistrySource
from bootree.oci.zchunked import (
    SEGMENT,
    TAR_HEADERS_BOOTREE,
    TAR_HEADERS_KEY,
    ChunkedLayout,
    TarSplitEntry,
    TocEntry,
    decode_tarsplit,
    decode_toc,
    layout_from_annotations,
    tar_offsets,
    zstd_decompress,
)
from bootree.oci.zchunktar import synth_tarsplit
from bootree.repo import Repo

__all__ = ["GAP", "WORKERS", "PartialFetcher", "PartialStats", "partial_fetcher"]

log = logging.getLogger(__name__)

#: Ranges separated by fewer bytes than this are fetched as one (a request costs ~0.5 KiB).
GAP = 4096
#: Largest coalesced request (a single larger frame is still fetched in one request).
RANGE_MAX = 8 << 20
#: Range requests at once, per layer.
WORKERS = 4
#: Fetch the whole blob instead when a rebuild would fetch more than this share of its bytes
#: (the missing frames, the tar-split unless derived, :data:`REQUEST_COST` a request): a rebuild
#: costs requests and CPU, a whole blob is also checked against its own digest.
WHOLE_BLOB_SHARE = 0.95
#: What a range request costs beyond its body (request and response headers, bytes).
REQUEST_COST = 600
_CHUNK = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")
_OBJECTS = ["sysroot", "ostree", "repo", "objects"]
_META_TYPES = {"dirtree": ObjectType.DIR_TREE, "dirmeta": ObjectType.DIR_META, "commit": ObjectType.COMMIT,
               "commitmeta": ObjectType.COMMIT_META}

Reader = Callable[[], Iterator[bytes]]


@dataclass
class PartialStats:
    """What the partial pulls of one import did (for logs and tests)."""

    layers: int = 0
    fallbacks: int = 0
    files_local: int = 0
    files_fetched: int = 0
    bytes_local: int = 0
    bytes_ranges: int = 0
    requests: int = 0
    derived_headers: int = 0
    """Layers rebuilt with tar headers derived from the TOC (no tar-split fetched)."""


@dataclass(slots=True)
class _File:
    name: str
    size: int
    digest: str
    offset: int
    end: int
    tar_off: int
    reader: Reader | None = None


@dataclass
class _Range:
    start: int
    end: int
    files: list[_File] = field(default_factory=list)


@dataclass
class _Plan:
    """A layer's regular files by name (each with its local candidate) and the frames to fetch."""

    files: dict[str, _File]
    ranges: list[_Range]
    range_bytes: int


def coalesce(files: list[_File], gap: int = GAP, limit: int = RANGE_MAX) -> list[_Range]:
    """Files' frames (sorted by offset) as few requests: neighbours closer than ``gap`` joined."""
    out: list[_Range] = []
    for f in sorted(files, key=lambda f: f.offset):
        cur = out[-1] if out else None
        if cur is not None and f.offset - cur.end <= gap and f.end - cur.start <= limit:
            cur.end = max(cur.end, f.end)
            cur.files.append(f)
        else:
            out.append(_Range(f.offset, f.end, [f]))
    return out


class _FrameWriter:
    """The sink of one range request: each file's frames inflated, hashed, written in place."""

    def __init__(self, fd: int, rng: _Range, stats: PartialStats, on_bytes: Callable[[int], None]) -> None:
        import zstandard

        self._zstd = zstandard
        self.fd, self.files, self.stats, self.on_bytes = fd, rng.files, stats, on_bytes
        self.i = 0
        self._d: Any = None
        self._sha = hashlib.sha256()
        self._written = 0

    def __call__(self, pos: int, chunk: bytes) -> None:
        mv = memoryview(chunk)
        self.on_bytes(len(chunk))
        while mv and self.i < len(self.files):
            f = self.files[self.i]
            if pos < f.offset:  # a gap between coalesced frames
                skip = min(f.offset - pos, len(mv))
                pos, mv = pos + skip, mv[skip:]
                continue
            take = min(f.end - pos, len(mv))
            self._feed(f, bytes(mv[:take]))
            pos, mv = pos + take, mv[take:]
            if pos == f.end:
                self._done(f)
                self.i += 1

    def _feed(self, f: _File, data: bytes) -> None:
        while data:
            if self._d is None:
                self._d = self._zstd.ZstdDecompressor().decompressobj()
            try:
                out = self._d.decompress(data)
            except self._zstd.ZstdError as e:
                raise LayerError(f"zstd:chunked: file {f.name!r}: bad zstd frame: {e}") from None
            if out:
                if self._written + len(out) > f.size:
                    raise LayerError(f"zstd:chunked: file {f.name!r}: more than its {f.size} bytes")
                os.pwrite(self.fd, out, f.tar_off + self._written)
                self._sha.update(out)
                self._written += len(out)
            data = self._d.unused_data if self._d.eof else b""
            if self._d.eof:
                self._d = None  # a file stored as several frames (rolling-hash chunks)

    def _done(self, f: _File) -> None:
        got = "sha256:" + self._sha.hexdigest()
        if self._written != f.size or got != f.digest:
            raise LayerError(f"zstd:chunked: file {f.name!r} does not match its TOC digest "
                             f"({self._written} bytes, {got})")
        self.stats.files_fetched += 1
        self._d, self._sha, self._written = None, hashlib.sha256(), 0


class PartialFetcher:
    """Partial pulls from one registry repository into a rebuilt tar (see the module docstring)."""

    def __init__(self, repo: Repo, client: RegistryClient, repository: str, *, workers: int = WORKERS,
                 gap: int = GAP, diff_ids: Mapping[str, str] | None = None) -> None:
        self.repo, self.client, self.repository = repo, client, repository
        # layer digest -> diff_id: lets a rebuild with derived headers check itself.
        self.diff_ids = dict(diff_ids or {})
        self.workers, self.gap = workers, gap
        self.stats = PartialStats()
        self._images = self._image_roots()
        self._trees: dict[Checksum, tuple[dict[str, Checksum], dict[str, Checksum]]] = {}
        # One layer's rebuild at a time (its range requests run in parallel): a large layer's
        # TOC is tens of MB of Python objects, and the layer downloads run three at once.
        self._one = threading.Lock()

    def _image_roots(self) -> list[Checksum]:
        """Root dirtrees of the stored images, newest ref order as listed (damaged ones skipped)."""
        roots = []
        for csum in self.repo.list_refs(IMAGE_REF_PREFIX.rstrip("/")).values():
            with contextlib.suppress(Exception):
                roots.append(self.repo.read_commit(csum).root_tree)
        return roots

    # --- local candidates ------------------------------------------------------------------

    def _tree(self, csum: Checksum) -> tuple[dict[str, Checksum], dict[str, Checksum]]:
        t = self._trees.get(csum)
        if t is None:
            dt: DirTree = self.repo.read_dirtree(csum)
            t = self._trees[csum] = ({n: c for n, c in dt.files}, {n: c for n, c, _ in dt.dirs})
        return t

    def _by_path(self, parts: list[str]) -> Checksum | None:
        for root in self._images:
            tree: Checksum | None = root
            try:
                for p in parts[:-1]:
                    assert tree is not None
                    tree = self._tree(tree)[1].get(p)
                    if tree is None:
                        break
                if tree is not None:
                    csum = self._tree(tree)[0].get(parts[-1])
                    if csum is not None:
                        return csum
            except LayerError:
                raise
            except Exception:  # a damaged stored image is only a missed candidate
                continue
        return None

    def _object_reader(self, csum: Checksum) -> Iterator[bytes]:
        with self.repo.open_file(csum) as obj:
            stream = obj.stream
            if stream is None:
                return
            while chunk := stream.read(_CHUNK):
                yield chunk

    def candidate(self, name: str) -> Reader | None:
        """Where a file of this name may already be in the repository (unverified)."""
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts:
            return None
        if len(parts) == 6 and parts[:4] == _OBJECTS and len(parts[4]) == 2:
            rest, _, ext = parts[5].partition(".")
            csum = Checksum(parts[4] + rest)
            if not _HEX.fullmatch(csum):
                return None
            if ext == "file" and self.repo.has_object(ObjectType.FILE, csum):
                return lambda: self._object_reader(csum)
            otype = _META_TYPES.get(ext)
            if otype is not None and self.repo.has_object(otype, csum):
                return lambda: iter([self.repo.load_metadata(otype, csum)])
            return None
        if parts[:2] == ["sysroot", "ostree"]:
            return None
        if parts[0] == "etc":
            parts = ["usr", *parts]
        found = self._by_path(parts)
        if found is None or not self.repo.has_object(ObjectType.FILE, found):
            return None
        return lambda: self._object_reader(found)

    # --- the pull --------------------------------------------------------------------------

    def _range(self, desc: Descriptor, lo: int, hi: int) -> bytes | None:
        """Bytes ``lo .. hi`` of the blob, or None when the registry ignores Range."""
        buf = bytearray(hi - lo)

        def sink(pos: int, chunk: bytes) -> None:
            buf[pos - lo : pos - lo + len(chunk)] = chunk

        self.stats.requests += 1
        if not self.client.get_range(self.repository, desc, lo, hi, sink):
            return None
        return bytes(buf)

    def fetch(self, desc: Descriptor, dest: Path, on_bytes: BytesFn | None = None) -> bool:
        """Rebuild ``desc``'s uncompressed tar at ``dest``; false: fetch the whole blob instead.

        Raises:
            LayerError: a TOC or tar-split that does not match its checksum, a malformed TOC,
                a file whose bytes do not match its TOC digest.
            RegistryError: HTTP errors of the range requests.
        """
        layout = layout_from_annotations(desc.annotations, desc.size)
        if layout is None:
            return False
        with self._one:
            ok = self._fetch(desc, layout, dest, on_bytes)
        if ok:
            self.stats.layers += 1
        else:
            self.stats.fallbacks += 1
        return ok

    def _fetch(self, desc: Descriptor, layout: ChunkedLayout, dest: Path, on_bytes: BytesFn | None) -> bool:
        # The TOC first, alone: the tar-split is fetched only when the layer is rebuilt and its
        # headers cannot be derived from the TOC.
        toc_c = self._range(desc, layout.toc_offset, layout.toc_offset + layout.toc_length)
        if toc_c is None:
            log.info("%s: the registry ignores Range requests: fetching the whole blob", desc.digest)
            return False
        layout.check_toc(toc_c)
        toc = decode_toc(zstd_decompress(toc_c, layout.toc_uncompressed, "zstd:chunked TOC"))
        del toc_c
        if not toc.tar_split_digest:
            return False
        plan = self._plan(desc, layout, toc.entries)
        diff_id = self.diff_ids.get(desc.digest)
        derive = desc.annotations.get(TAR_HEADERS_KEY) == TAR_HEADERS_BOOTREE and diff_id is not None
        cost = plan.range_bytes + len(plan.ranges) * REQUEST_COST + (0 if derive else layout.tarsplit_length)
        if cost > WHOLE_BLOB_SHARE * desc.size:
            log.info("%s: %d of %d bytes would be fetched: fetching the whole blob", desc.digest, cost, desc.size)
            return False
        if derive:
            records = synth_tarsplit(toc.entries)
            if records is not None:
                ok = self._build(desc, dest, plan, records, on_bytes, diff_id)
                if ok is not None:
                    self.stats.derived_headers += 1
                    return ok
                log.warning("%s: the tar rebuilt from the TOC does not match the diff_id: fetching the "
                            "tar-split", desc.digest)
                plan = self._plan(desc, layout, toc.entries)
        ts_c = self._range(desc, layout.tarsplit_offset, layout.tarsplit_offset + layout.tarsplit_length)
        if ts_c is None:
            return False
        if digest_of(ts_c) != toc.tar_split_digest:
            raise LayerError(f"zstd:chunked tar-split of {desc.digest} does not match the TOC's tarSplitDigest")
        records = decode_tarsplit(_lines(ts_c, layout.tarsplit_uncompressed))
        return bool(self._build(desc, dest, plan, records, on_bytes, None))

    def _plan(self, desc: Descriptor, layout: ChunkedLayout, entries: tuple[TocEntry, ...]) -> _Plan:
        """Which regular files are taken locally and which frames are fetched (from the TOC)."""
        data_end = min(layout.toc_offset, layout.tarsplit_offset) - 8
        by_name: dict[str, _File] = {}
        for e in entries:
            if e.type == "reg" and e.size > 0:
                if not e.digest or not e.offset < e.end_offset <= data_end:
                    raise LayerError(f"zstd:chunked: TOC entry {e.name!r} has no digest or a bad offset")
                by_name[e.name] = _File(e.name, e.size, e.digest, e.offset, e.end_offset, -1,
                                        self.candidate(e.name))
        ranges = coalesce([f for f in by_name.values() if f.reader is None], self.gap)
        return _Plan(by_name, ranges, sum(r.end - r.start for r in ranges))

    def _build(self, desc: Descriptor, dest: Path, plan: _Plan, records: Iterable[TarSplitEntry],
               on_bytes: BytesFn | None, diff_id: str | None) -> bool | None:
        """Rebuild the tar into ``dest`` (via a temporary file). False: the registry ignored
        Range; None: the tar does not match ``diff_id`` (checked only when one is given: the
        headers were derived, not fetched)."""
        tmp = dest.with_name(dest.name + ".partial")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            ok: bool | None = self._rebuild(fd, desc, plan, records, on_bytes)
            if ok and diff_id is not None and _fd_digest(fd) != diff_id:
                ok = None
            if ok:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        if not ok:
            tmp.unlink(missing_ok=True)
            return ok
        os.rename(tmp, dest)
        return True

    def _rebuild(self, fd: int, desc: Descriptor, plan: _Plan, records: Iterable[TarSplitEntry],
                 on_bytes: BytesFn | None) -> bool:
        total = 0
        seg = bytearray()
        seg_at = 0
        placed: set[str] = set()
        for rec, off in tar_offsets(records):
            total = off + (len(rec.payload) if rec.type == SEGMENT else rec.size)
            if rec.type == SEGMENT:
                if not seg:
                    seg_at = off
                seg += rec.payload
                if len(seg) >= _CHUNK:
                    os.pwrite(fd, seg, seg_at)
                    seg.clear()
            elif rec.size:
                if seg:
                    os.pwrite(fd, seg, seg_at)
                    seg.clear()
                name = rec.name.decode("utf-8", "surrogateescape")
                f = plan.files.get(name)
                if f is None or f.size != rec.size or name in placed:
                    raise LayerError(f"zstd:chunked: tar-split file {name!r} has no matching TOC entry")
                f.tar_off = off
                placed.add(name)
        if seg:
            os.pwrite(fd, seg, seg_at)
        if len(placed) != len(plan.files):
            raise LayerError("zstd:chunked: TOC files missing from the tar-split")
        os.ftruncate(fd, total)
        missing = list(plan.ranges)
        for f in plan.files.values():
            if f.reader is None:
                continue
            if self._copy_local(fd, f):
                self.stats.files_local += 1
                self.stats.bytes_local += f.size
            else:  # a local object that does not match: its frames are fetched after all
                missing.extend(coalesce([f], self.gap))
        got = 0

        def counted(n: int) -> None:
            nonlocal got
            got += n
            if on_bytes is not None:
                on_bytes(got)

        self.stats.requests += len(missing)
        self.stats.bytes_ranges += sum(r.end - r.start for r in missing)
        if not missing:
            return True
        with ThreadPoolExecutor(min(self.workers, len(missing)), thread_name_prefix="bootree-oci-range") as pool:
            futures = [pool.submit(self.client.get_range, self.repository, desc, r.start, r.end,
                                   _FrameWriter(fd, r, self.stats, counted)) for r in missing]
            try:
                return all(f.result() for f in futures)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise

    def _copy_local(self, fd: int, f: _File) -> bool:
        """Write a local candidate's bytes in place if they match the TOC digest."""
        assert f.reader is not None
        h = hashlib.sha256()
        n = 0
        try:
            for chunk in f.reader():
                if n + len(chunk) > f.size:
                    return False
                os.pwrite(fd, chunk, f.tar_off + n)
                h.update(chunk)
                n += len(chunk)
        except LayerError:
            raise
        except Exception as e:  # an unreadable local object is only a missed candidate
            log.debug("local candidate for %s unusable: %s", f.name, e)
            return False
        return n == f.size and "sha256:" + h.hexdigest() == f.digest


def _lines(compressed: bytes, limit: int) -> Iterator[bytes]:
    """The decompressed tar-split data line by line, bounded by its declared size (streamed:
    a large layer's tar-split is tens of MB uncompressed)."""
    import zstandard

    n = 0
    rest = b""
    try:
        with zstandard.ZstdDecompressor().stream_reader(compressed, read_across_frames=True) as r:
            while chunk := r.read(_CHUNK):
                n += len(chunk)
                if n > limit:
                    raise LayerError(f"zstd:chunked tar-split: more than its declared {limit} bytes")
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                yield from lines
    except zstandard.ZstdError as e:
        raise LayerError(f"zstd:chunked tar-split: bad zstd data: {e}") from None
    if rest.strip():
        yield rest


def _fd_digest(fd: int) -> str:
    """sha256 of a file's bytes, read from the start."""
    h = hashlib.sha256()
    pos = 0
    while chunk := os.pread(fd, _CHUNK, pos):
        h.update(chunk)
        pos += len(chunk)
    return "sha256:" + h.hexdigest()


def partial_fetcher(repo: Repo, source: ImageSource,
                    diff_ids: Mapping[str, str] | None = None) -> PartialFetcher | None:
    """A partial fetcher for a registry source, when the repository holds an image to reuse
    (``diff_ids``: layer digest -> diff_id, from the image config).

    ``BOOTREE_OCI_PARTIAL=0`` turns partial pulls off (whole blobs, as before).
    """
    if os.environ.get("BOOTREE_OCI_PARTIAL", "1") == "0" or not isinstance(source, RegistrySource):
        return None
    if not repo.list_refs(IMAGE_REF_PREFIX.rstrip("/")):
        return None
    return PartialFetcher(repo, source.client, source.ref.repository, diff_ids=diff_ids)
