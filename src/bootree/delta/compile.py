"""Generate a libostree-compatible static delta between two commits (``static-delta generate``).

Layer: delta. The choices are libostree 2022.7's (ostree-format.md §7.5), so ``ostree`` applies
what we write and sizes stay comparable:

* the delta carries every object reachable from ``to`` and not from ``from`` (a scratch delta:
  from nothing), except the ``to`` commit itself, which the superblock embeds;
* a new regular file whose name (or its part before the first ``.``) matches an old file of
  a size within ±30% is a *similar pair*: rolling-checksum matching when at least half its
  chunks are found in the old file (``o r w … R w c``), else bsdiff (``r o B c R``) when both
  fit ``max_bsdiff_size``; where rollsum qualifies, bsdiff is tried as well and the smaller
  of the two (compressed) is kept, which libostree does not do (it takes rollsum;
  ``DeltaOptions.prefer_rollsum`` does the same);
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

import functools
import logging
import lzma
import os
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bootree import _fs
from bootree.delta import bootree_mode
from bootree.delta.bootree_mode import BootreePlan
from bootree.delta.bootree_mode import Pair as _Pair
from bootree.delta.bsdiff import bsdiff
from bootree.delta.content import ContentInfo, content_info, load_content
from bootree.delta.parts import (
    MB,
    DeltaOptions,
    GenerateResult,
    PairPlan,
    PartAssembler,
    emit_bootree,
    emit_new,
    emit_pair,
    emit_whole,
)
from bootree.delta.planqueue import PlanQueue
from bootree.delta.rollsum import RollsumResult, match_chunks
from bootree.delta.store import publish_delta_dir
from bootree.errors import DeltaError
from bootree.format.checksum import Checksum, to_raw
from bootree.format.delta import (
    BOOTREE_PREFETCH_KEY,
    MAX_PREFETCH_HINTS,
    DeltaName,
    FallbackEntry,
    Superblock,
)
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType
from bootree.repo import Repo

__all__ = ["MB", "DeltaOptions", "GenerateResult", "SuperblockSigner", "generate_delta"]

log = logging.getLogger(__name__)

#: The xz used to compare two encodings of one object (LZMA2 preset 1: fast, and it ranks
#: encodings as the part's preset 8 does).
_ESTIMATE_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 1}]
#: Bytes a chunk copy (``w`` from the read source) adds to the compressed operation stream.
_COPY_COST = 6

#: Turns the plain superblock's bytes into the file written (a signed superblock), or ``None``.
SuperblockSigner = Callable[[bytes], bytes]

#: bootree format: pairs from this size on are planned first (see ``generate_delta``).
_EARLY_PAIR = 8 << 20


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


def _packed(data: bytes | memoryview) -> int:
    """About what ``data`` costs in an xz'd part (a fast xz: both candidates are measured alike)."""
    return len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=_ESTIMATE_FILTERS)) if data else 0


def _literal_bytes(new: bytes, result: RollsumResult) -> bytes:
    """The bytes a rollsum encoding ships in the payload: what no chunk copy covers."""
    view = memoryview(new)
    out = bytearray()
    pos = 0
    for m in result.matches:
        out += view[pos : m.new_offset]
        pos = m.new_offset + m.length
    out += view[pos:]
    return bytes(out)


def _plan_pair(repo: Repo, pair: _Pair, options: DeltaOptions) -> PairPlan:
    """Worker: choose rollsum, bsdiff or the whole object for one similar pair.

    libostree's order decides which pairs qualify for what (rollsum when at least half the new
    file's chunks are in the old one, else bsdiff); where both qualify, both are made and the
    smaller one, measured compressed, is kept. Two workers plan pairs at once (bsdiff, hashing
    and liblzma release the GIL), so the extra bsdiff runs on both cores.
    """
    old = load_content(repo, pair.old)
    new = load_content(repo, pair.new)
    result = match_chunks(old, new)
    fits = pair.old_info.size + pair.new_info.size <= options.max_bsdiff_size
    if result.match_ratio >= 50:
        if options.bsdiff and fits and not options.prefer_rollsum and result.matched_bytes < len(new):
            literals = _literal_bytes(new, result)
            patch = bsdiff(old, new)
            # A chunk copy costs about two varints and an op byte in the operation stream.
            if _packed(patch) < _packed(literals) + _COPY_COST * len(result.matches):
                return PairPlan(pair, None, patch, None)
        return PairPlan(pair, result, None, new)
    hopeless = result.match_ratio < 5 and _incompressible(new) and _aligned_share(old, new) < 0.5
    if options.bsdiff and fits and not hopeless:
        return PairPlan(pair, None, bsdiff(old, new), None)
    return PairPlan(pair, None, None, new)


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
    # Only old files that share a key with a new one can pair: the others are not even opened.
    wanted = {key for path in to_paths.values() for key in _basename_keys(path)}
    seen: set[Checksum] = set()
    for path, csum in _paths(repo, from_commit):
        if csum in seen or not any(key in wanted for key in _basename_keys(path)):
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
    sign: SuperblockSigner | None = None,
) -> GenerateResult:
    """Write the delta ``from_commit`` → ``to_commit`` into the repository (or to ``filename``).

    With ``filename`` the superblock is written there and parts beside it (``0``, ``1``, …),
    as ``ostree static-delta generate --filename`` does; with ``inline`` it is one file.
    ``sign`` wraps the finished superblock (``--sign``: :func:`bootree.sign.delta.sign_superblock`);
    the superblock digest that indexes and the summary record is then the signed file's.

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
    to_files = list(_paths(repo, to_commit))
    for path, csum in to_files:
        all_to_paths.add(path)
        if csum in new_files:
            to_paths.setdefault(csum, path)
    bootree = options.format == "bootree"
    pairs: list[_Pair] = []
    from_files: list[tuple[str, Checksum]] = []
    if from_commit is not None:
        if bootree:
            from_files = list(_paths(repo, from_commit))
            pairs = bootree_mode.find_pairs(repo, from_files, to_paths, infos, all_to_paths)
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
            dict(to_files),
            dict(from_files),
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
            asm = PartAssembler(options, pool, staging)

            def emit_meta() -> None:
                for otype, csum in meta:
                    data = repo.load_metadata(otype, csum)
                    asm.reserve(len(data))
                    off = asm.add_payload(data)
                    asm.ops.splice_meta(len(data), off)
                    asm.add_object(otype, csum, len(data))

            # bootree's format puts metadata last (only the client's final completeness walk
            # reads it): what the first recompression needs comes first (see ``release``).
            if ctx is None:
                emit_meta()
            # Similar pairs, planned ahead on the workers (each plan holds its files in memory).
            # Plans reading objects this delta writes (an initramfs holding a new library) wait
            # for their sources and go right after them, not at the end: the client's
            # recompression of such an object (seconds for an initramfs) then overlaps the
            # rest of the delta instead of running alone after it.
            waiting: list[tuple[BootreePlan, set[Checksum]]] = []
            emitted: set[Checksum] = set()
            result_stats.reads_own_objects = 0
            # While a plan waits for its sources, other plans are held back, so that the
            # client reaches the waiting object (and starts its seconds of recompression) after
            # its sources only; the first such object also ends the first part, which the
            # client then decodes quickly while the next part is decoded beside it.
            deferred: list[BootreePlan] = []
            early_part = [True]
            #: old objects the early part reads decompressed (the superblock's prefetch hint)
            hints: list[Checksum] = []

            def wrote(csum: Checksum) -> None:
                emitted.add(csum)
                emit_ready()

            def emit_ready() -> None:
                ready = [w for w in waiting if w[1] <= emitted]
                for w in ready:
                    waiting.remove(w)
                    if early_part[0] and ctx is not None:
                        used = (w[0].sources[m.source] for m in w[0].multi)
                        hints.extend(c for c, dec in dict.fromkeys(used) if dec and c not in ctx.new and c not in hints)
                    result_stats.reads_own_objects += 1
                    emit_bootree(asm, w[0], result_stats)
                    wrote(w[0].pair.new)

            # The largest pairs are planned first (an initramfs's plan names its sources), and
            # the sources of a waiting plan are moved to the front of what is left.
            ordered = sorted(pairs, key=lambda p: p.new_info.size < _EARLY_PAIR) if ctx is not None else pairs
            plan_one: Callable[[_Pair], PairPlan | BootreePlan]
            if ctx is not None:
                plan_one = functools.partial(bootree_mode.plan_pair, repo, ctx=ctx)
            else:
                plan_one = functools.partial(_plan_pair, repo, options=options)
            queue: PlanQueue[PairPlan | BootreePlan] = PlanQueue(pool, ordered, plan_one, threads=options.threads)
            pair_of = {p.new: p for p in pairs}
            whole = {c for c in regular if c not in fallback_ids}

            def release() -> None:
                """Once no plan waits: end the early part, emit what was held back."""
                if waiting:
                    return
                if early_part[0] and result_stats.reads_own_objects:
                    early_part[0] = False
                    asm.flush()
                while deferred and not waiting:
                    held = deferred.pop(0)
                    emit_bootree(asm, held, result_stats)
                    wrote(held.pair.new)

            def emit(plan: PairPlan | BootreePlan) -> None:
                if isinstance(plan, BootreePlan):
                    if plan.reads_new:
                        assert ctx is not None
                        used = {plan.sources[m.source][0] for m in plan.multi}
                        needs = used & ctx.new
                        waiting.append((plan, needs))
                        for csum in sorted(needs - emitted):
                            held = next((d for d in deferred if d.pair.new == csum), None)
                            if held is not None:
                                deferred.remove(held)
                                emit_bootree(asm, held, result_stats)
                                wrote(csum)
                            elif csum in whole:
                                whole.discard(csum)
                                emit_new(asm, csum, infos[csum], load_content(repo, csum))
                                wrote(csum)
                            elif csum in pair_of and pair_of[csum] in queue:
                                queue.hurry(pair_of[csum])
                        emit_ready()  # its sources may all be out already
                        release()
                        return
                    if waiting and plan.pair.new not in set().union(*(w[1] for w in waiting)):
                        deferred.append(plan)
                        return
                    emit_bootree(asm, plan, result_stats)
                    wrote(plan.pair.new)
                    release()
                else:
                    emit_pair(asm, plan, result_stats)

            while queue:
                emit(queue.next())
            for held in deferred:  # held back for a plan whose sources never came (not expected)
                emit_bootree(asm, held, result_stats)
                wrote(held.pair.new)
            for csum in regular:
                if csum in whole:
                    (emit_new if bootree else emit_whole)(asm, csum, infos[csum], load_content(repo, csum))
                    wrote(csum)
            for csum in symlinks:
                emit_whole(asm, csum, infos[csum], b"")
            for plan, _needs in waiting:  # sources never written (not expected): at the end
                result_stats.reads_own_objects += 1
                emit_bootree(asm, plan, result_stats)
            if ctx is not None:
                emit_meta()
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
            user_metadata=(_bootree_metadata(hints) if bootree else [])
            + [(k, Variant("s", v)) for k, v in options.metadata],
        )
        result_stats.superblock = superblock
        sb_path = staging / "superblock"
        with open(sb_path, "xb") as f:
            plain = superblock.to_bytes()
            f.write(sign(plain) if sign is not None else plain)
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


def _bootree_metadata(hints: list[Checksum]) -> list[tuple[str, Variant]]:
    meta = [(bootree_mode.FORMAT_KEY, Variant("u", bootree_mode.FORMAT_VERSION))]
    if hints:
        raw = b"".join(to_raw(c) for c in hints[:MAX_PREFETCH_HINTS])
        meta.append((BOOTREE_PREFETCH_KEY, Variant("ay", raw)))
    return meta


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


