"""bootree's own delta mode (``static-delta generate --format=bootree``): smaller than ostree's.

Layer: delta. Same superblock and part containers as libostree's deltas (so the same verified
applier runs them), with part version 1, a ``bootree.delta-format`` superblock key, a separate
``bootree-deltas/`` directory that ostree never looks at, and three more operations
(:mod:`bootree.format.deltaops`): ``U`` reads an old object's *decompressed* content, ``G``
builds an object as the recompression of what its writes produce, ``Z`` is a zstd frame whose
dictionary is the old object (``zstd --patch-from``). What it does better than libostree:

* **matching by more than the name.** A new file is paired with an old one at the same path,
  else at the same path once version numbers are masked (``6.1.0-31`` ~ ``6.1.0-32``,
  ``libssl.so.3.0.11`` ~ ``3.0.13``), else by basename (libostree's rule), else, for files of
  removed paths (renames, moves), by content: the old file sharing the most rolling-checksum
  chunks;
* **compression-aware diffs.** When both sides are gzip, zlib, xz or zstd data of the same kind
  and the new one is rebuilt bit for bit from its contents
  (:func:`bootree.delta.recompress.find_params`, checked at generation time), the uncompressed contents
  are diffed (chunk copies from the old contents plus literals xz compresses well) and the
  client recompresses; otherwise the object is diffed or shipped as it is;
* **the best of rollsum, zstd patch-from and bsdiff per object**, by compressed size.

The client verifies every object's checksum before it is published, as for every delta.
"""

from __future__ import annotations

import hashlib
import logging
import re
import stat
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import zstandard

from bootree.delta.bsdiff import bsdiff
from bootree.delta.content import ContentInfo, content_info, load_content
from bootree.delta.recompress import codec_of, decompress, find_params
from bootree.delta.rollsum import RollsumResult, SourceMatch, chunk_ends, match_chunks, match_chunks_multi
from bootree.errors import DeltaFormatError
from bootree.format.checksum import Checksum
from bootree.format.delta import BOOTREE_DELTAS_ROOT, BOOTREE_SUMMARY_KEY
from bootree.format.recompress import Params
from bootree.repo import Repo

__all__ = ["BootreePlan", "PairContext", "find_pairs", "plan_pair"]

log = logging.getLogger(__name__)

#: Superblock metadata key and part version of bootree-format deltas. Format 2: parts may be
#: zstd-compressed (:mod:`bootree.delta.partzstd`); format 1 files (xz parts) still apply.
FORMAT_KEY = "bootree.delta-format"
FORMAT_VERSION = 2
PART_VERSION = 1
#: Where bootree-format deltas live (ostree lists and serves only ``deltas/``), and their summary key.
ROOT = BOOTREE_DELTAS_ROOT
SUMMARY_KEY = BOOTREE_SUMMARY_KEY

_DIGITS = re.compile(r"\d+")
#: bsdiff is slow (suffix sorting): only for objects up to this size.
_MAX_BSDIFF = 2 << 20
#: ... and from this size on, when zstd patch-from leaves at least ``_BSDIFF_WORTH`` of the
#: object: where bsdiff beats patch-from it is on large executables whose code moved (every
#: relative address changes; bsdiff's byte-wise differences compress), never by much on small
#: files. On the corpus this keeps 92 of the 95 kB bsdiff saves for half its 8.5 CPU seconds.
_MIN_BSDIFF = 512 << 10
_BSDIFF_WORTH = 0.05
#: zstd patch-from level. Measured on the corpus's 1,056 patch-from pairs: levels 19 (up to
#: 1 MB) / 12 / 9 took 11.3 CPU s, level 9 for all 1.9 s for 37 kB more (level 12: 3.9 s,
#: 34 kB); at level 6 and below the matcher no longer reaches into the old object (+3.7 MB).
_ZSTD_LEVEL = 9
_MAX_GUNZIP = 1 << 30


@dataclass(frozen=True, slots=True)
class Pair:
    """A new object and the old one it is diffed against."""

    new: Checksum
    new_info: ContentInfo
    old: Checksum
    old_info: ContentInfo


@dataclass(frozen=True, slots=True)
class PairContext:
    """What planning may look at besides the pair: both trees by path, and which new objects
    a later operation may read as a source (new objects the delta writes itself, except
    fallbacks, which a pull may still be fetching)."""

    to_by_path: dict[str, Checksum]
    from_by_path: dict[str, Checksum]
    readable_new: frozenset[Checksum]
    new: frozenset[Checksum]


@dataclass(frozen=True, slots=True)
class BootreePlan:
    """How one paired object travels; exactly one way is set (``whole`` when none wins)."""

    pair: Pair
    whole: bytes | None = None
    rollsum: RollsumResult | None = None  # against ``inner_old`` when ``gzip`` is set
    new_data: bytes | None = None  # rollsum literals come from here (the inner data for gzip)
    gzip: Params | None = None  # recompression parameters (gzip, zlib, xz or zstd)
    zstd_frame: bytes | None = None
    patch: bytes | None = None
    #: gzip plans: the sources (checksum, decompressed?) of ``multi``'s matches.
    sources: tuple[tuple[Checksum, bool], ...] = ()
    multi: tuple[SourceMatch, ...] = ()
    #: Whether a source is a new object of this delta (the plan must then be emitted last).
    reads_new: bool = False


def _masked(path: str) -> str:
    return _DIGITS.sub("#", path)


def _sketch(data: bytes, k: int = 32) -> set[bytes]:
    """The ``k`` smallest chunk digests of ``data``: similar files share many (a MinHash)."""
    view = memoryview(data)
    start = 0
    digests = []
    for end in chunk_ends(data):
        digests.append(hashlib.blake2b(view[start:end], digest_size=8).digest())
        start = end
    return set(sorted(digests)[:k])


def find_pairs(
    repo: Repo,
    from_files: list[tuple[str, Checksum]],
    to_paths: dict[Checksum, str],
    infos: dict[Checksum, ContentInfo],
    all_to_paths: set[str],
) -> list[Pair]:
    """Pair each new regular file with the old file most likely to resemble it.

    ``from_files`` are the old tree's (path, file checksum) entries. An old file's header is
    read only when it is a candidate (most of the old tree never is).
    """
    infos_old: dict[Checksum, ContentInfo | None] = {}

    def usable(csum: Checksum) -> ContentInfo | None:
        if csum not in infos_old:
            info = content_info(repo, csum)
            infos_old[csum] = None if info.header.is_symlink or info.size == 0 else info
        return infos_old[csum]

    def candidates(csums: list[Checksum]) -> list[tuple[Checksum, ContentInfo]]:
        return [(c, i) for c in csums if (i := usable(c)) is not None]

    by_path: dict[str, Checksum] = {}
    by_mask: dict[str, list[Checksum]] = {}
    by_base: dict[str, list[Checksum]] = {}
    removed: list[Checksum] = []
    for path, csum in from_files:
        by_path.setdefault(path, csum)
        by_mask.setdefault(_masked(path), []).append(csum)
        base = path.rpartition("/")[2]
        by_base.setdefault(base, []).append(csum)
        stem = base.split(".", 1)[0]
        if stem != base:
            by_base.setdefault(stem, []).append(csum)
        if path not in all_to_paths:
            removed.append(csum)
    pairs: list[Pair] = []
    unmatched: list[tuple[Checksum, ContentInfo]] = []
    for csum, path in to_paths.items():
        info = infos[csum]
        if info.header.is_symlink or info.size == 0:
            continue
        same = by_path.get(path)
        best = None
        if same is not None and (same_info := usable(same)) is not None:
            best = (same, same_info)
        if best is None:
            best = _closest(candidates(by_mask.get(_masked(path), [])), info.size, 1.0)
        if best is None:
            base = path.rpartition("/")[2]
            best = _closest(candidates(by_base.get(base, []) + by_base.get(base.split(".", 1)[0], [])), info.size, 0.5)
        if best is None:
            if info.size >= 4096:
                unmatched.append((csum, info))
            continue
        pairs.append(Pair(csum, info, best[0], best[1]))
    pairs += _match_by_content(repo, unmatched, candidates(removed) if unmatched else [])
    return pairs


def _closest(cands: list[tuple[Checksum, ContentInfo]], size: int, tolerance: float) -> tuple[Checksum, ContentInfo] | None:
    best = None
    for cand in cands:
        diff = abs(cand[1].size - size)
        if diff > tolerance * max(size, 1):
            continue
        if best is None or diff < abs(best[1].size - size):
            best = cand
    return best


def _match_by_content(
    repo: Repo, new: list[tuple[Checksum, ContentInfo]], old: list[tuple[Checksum, ContentInfo]]
) -> list[Pair]:
    """Renamed or moved files: the removed old file sharing the most chunks with each new one."""
    if not new or not old:
        return []
    old = [(c, i) for c, i in old if i.size >= 4096]
    # Before the delta's workers start, so on both cores here (inflate and numpy release the GIL).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sketch") as pool:
        sketches = list(pool.map(lambda c: _sketch(load_content(repo, c)), [c for c, _i in old + new]))
    old_sketches = [(c, i, sk) for (c, i), sk in zip(old, sketches, strict=False)]
    out = []
    for (csum, info), sketch in zip(new, sketches[len(old) :], strict=True):
        best, score = None, 0
        for oc, oi, osk in old_sketches:
            shared = len(sketch & osk)
            if shared > score:
                best, score = (oc, oi), shared
        if best is not None and score >= 4:
            out.append(Pair(csum, info, best[0], best[1]))
    return out


def _cost(data: bytes) -> int:
    """A cheap estimate of what ``data`` costs after the part's compression."""
    return len(zlib.compress(data, 1)) if data else 0


def _zstd_patch(old: bytes, new: bytes) -> bytes:
    dict_data = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(
        _ZSTD_LEVEL, source_size=len(new), window_log=max(20, min(27, (len(old) + len(new)).bit_length()))
    )
    return zstandard.ZstdCompressor(dict_data=dict_data, compression_params=params).compress(new)


def plan_pair(repo: Repo, pair: Pair, ctx: PairContext) -> BootreePlan:
    """Worker: the cheapest way to send ``pair.new`` given ``pair.old``."""
    old = load_content(repo, pair.old)
    new = load_content(repo, pair.new)
    codec = codec_of(new)
    if codec is not None and codec_of(old) == codec and stat.S_ISREG(pair.new_info.header.mode):
        plan = _plan_compressed(repo, pair, old, new, ctx)
        if plan is not None:
            return plan
    result = match_chunks(old, new)
    if result.match_ratio >= 90:
        return BootreePlan(pair, rollsum=result, new_data=new)
    options: list[tuple[int, BootreePlan]] = [(_cost(new), BootreePlan(pair, whole=new))]
    if result.match_ratio >= 30:
        literal = sum(m.length for m in result.matches)
        options.append((_cost(new) * (len(new) - literal) // max(len(new), 1), BootreePlan(pair, rollsum=result, new_data=new)))
    frame = _zstd_patch(old, new)
    options.append((len(frame), BootreePlan(pair, zstd_frame=frame)))
    if _MIN_BSDIFF <= len(new) <= _MAX_BSDIFF and len(old) <= _MAX_BSDIFF and len(frame) >= _BSDIFF_WORTH * len(new):
        patch = bsdiff(old, new)
        options.append((_cost(patch), BootreePlan(pair, patch=patch)))
    return min(options, key=lambda o: o[0])[1]


def _cpio_names(data: bytes) -> list[str]:
    """Member names of a newc cpio archive (an initramfs), as far as it parses."""
    names = []
    pos = 0
    while pos + 110 <= len(data) and data[pos : pos + 6] in (b"070701", b"070702"):
        try:
            size = int(data[pos + 54 : pos + 62], 16)
            namesize = int(data[pos + 94 : pos + 102], 16)
        except ValueError:
            break
        name = data[pos + 110 : pos + 110 + namesize - 1].decode("utf-8", "replace")
        if name == "TRAILER!!!":
            break
        names.append(name)
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + size + 3) & ~3
    return names


#: Extra sources of one gzip plan (the tree's copies of an initramfs's files), in bytes.
_MAX_EXTRA_SOURCES = 256 << 20
#: The old object's own contents stay a source of a plan that also has the tree's files only
#: when they supply at least this share of their size in chunks no tree file has: reading
#: them means decompressing the whole old object on the client (0.4 CPU s for the corpus's
#: 59 MB initramfs, and its 59 MB in memory) while those chunks, shipped instead, cost about
#: what they compress to (the corpus: 416 kB of chunks, ~0.1 MB in the part).
_OLD_SHARE = 1 / 16


def _plan_compressed(repo: Repo, pair: Pair, old: bytes, new: bytes, ctx: PairContext) -> BootreePlan | None:
    """Diff the decompressed contents when the new object's compression is reproducible."""
    try:
        inner_new = decompress(new, max_size=_MAX_GUNZIP)
        inner_old = decompress(old, max_size=_MAX_GUNZIP)
    except DeltaFormatError:  # not one clean compressed stream: diff it as bytes
        return None
    params = find_params(new, inner_new)
    if params is None:
        log.debug("%s: %s not reproducible, diffed as compressed bytes", pair.new, codec_of(new))
        return None
    # An archive of files (an initramfs) also holds copies of files in the trees: the new tree's
    # (written earlier by this delta, or unchanged) and the old tree's versions are sources, and
    # come first: a chunk is read from a plain file when one has it, and the old object's
    # decompressed contents (last) only supply the rest.
    sources: list[tuple[Checksum, bool]] = []
    datas: list[bytes] = []
    total = 0
    for name in _cpio_names(inner_new):
        path = "/" + name.lstrip("./")
        for csum in (ctx.to_by_path.get(path), ctx.from_by_path.get(path)):
            if csum is None or (csum, False) in sources or total > _MAX_EXTRA_SOURCES:
                continue
            if csum in ctx.new and csum not in ctx.readable_new:
                continue
            data = load_content(repo, csum)
            if not data:
                continue
            sources.append((csum, False))
            datas.append(data)
            total += len(data)
    sources.append((pair.old, True))
    matches, _matched = match_chunks_multi([*datas, inner_old], inner_new)
    own = len(sources) - 1
    from_old = sum(m.length for m in matches if m.source == own)
    rest = [m for m in matches if m.source != own]
    if rest and from_old < _OLD_SHARE * len(inner_old):
        # Not worth decompressing the old object for: its chunks become literals.
        sources.pop()
        matches = rest
    used = {m.source for m in matches}
    reads_new = any(sources[i][0] in ctx.new for i in used)
    return BootreePlan(
        pair, new_data=inner_new, gzip=params, sources=tuple(sources), multi=tuple(matches), reads_new=reads_new,
        rollsum=RollsumResult((), 0, 0, sum(m.length for m in matches)),
    )
