"""Generate a delta, apply it elsewhere: every operation kind, every repo mode, and bad input refused."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from bootree.delta import (
    DeltaOptions,
    apply_offline,
    deflateblocks,
    generate_delta,
    list_deltas,
    parts,
    read_superblock,
    reindex,
)
from bootree.delta.apply import apply_delta
from bootree.delta.partzstd import ZSTD, decode_any_part
from bootree.delta.store import delete_delta, list_indexes
from bootree.errors import ChecksumMismatch, DeltaError, DeltaFormatError
from bootree.format.delta import (
    Compression,
    DeltaName,
    PartPayload,
    Superblock,
    decode_delta_index,
    decode_part,
    delta_index_relpath,
    encode_part,
    part_digest,
)
from bootree.format.deltaops import Bspatch, OpWriter, Splice, Write, decode_operations
from bootree.format.objects import ObjectType
from bootree.pull import pull_local
from bootree.repo import Repo, RepoMode
from delta_builders import Pair, make_pair

NO_FALLBACK = DeltaOptions(min_fallback_size=0)


def _target(tmp_path: Path, pair: Pair, mode: RepoMode, *, with_v1: bool = True) -> Repo:
    repo = Repo.init(tmp_path / f"dst-{mode.value}-{os.urandom(3).hex()}", mode=mode)
    if with_v1:
        pull_local(repo, pair.repo.path, [pair.v1])
    return repo


def _objects(repo: Repo) -> set[str]:
    return {str(p.relative_to(repo.path)) for p in (repo.path / "objects").rglob("*") if p.is_file()}


def _ops(pair: Pair, name: DeltaName) -> list[object]:
    _data, sb = read_superblock(pair.repo, name)
    out: list[object] = []
    for i, entry in enumerate(sb.parts):
        part = decode_part((pair.repo.path / name.relpath / str(i)).read_bytes(), max_size=1 << 30)
        out += decode_operations(part.operations, entry.objects, payload_size=len(part.payload),
                                 n_modes=len(part.modes), n_xattrs=len(part.xattrs))
    return out


@pytest.mark.parametrize("mode", [RepoMode.BARE_USER, RepoMode.ARCHIVE])
def test_from_delta_uses_every_operation_and_applies(tmp_path: Path, pair: Pair, mode: RepoMode) -> None:
    # big.txt qualifies for rollsum (most chunks unchanged) and for bsdiff: bsdiff's patch of a
    # 10-byte edit is smaller than rollsum's literal chunks, so it is kept; without bsdiff,
    # rollsum's chunk copies make it.
    for options, rollsum, bsdiff, kinds in (
        (NO_FALLBACK, 0, 3, {Splice, Bspatch}),
        (replace(NO_FALLBACK, bsdiff=False), 1, 0, {Splice, Write}),
    ):
        res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=options)
        assert (res.rollsum_objects, res.bsdiff_objects) == (rollsum, bsdiff)  # big.txt; libfoo.so.1 and tool
        assert kinds <= {type(op) for op in _ops(pair, res.name)}
        dst = _target(tmp_path, pair, mode)
        out = apply_offline(dst, pair.repo.path / res.name.superblock_relpath)
        assert out.commit == pair.v2 and out.objects_written > 0
        assert dst.fsck().ok
        big = next(c for p, k, c, _ in dst.walk_tree(pair.v2) if p.endswith("big.txt"))
        assert dst.load_file(big)[1].endswith(b"appended\n")


def test_scratch_inline_delta_into_empty_repo(tmp_path: Path, pair: Pair) -> None:
    res = generate_delta(pair.repo, pair.v2, options=replace(NO_FALLBACK, inline=True))
    files = sorted(p.name for p in res.path.iterdir())
    assert files == ["superblock"] and res.superblock.inline_part(0) is not None
    dst = _target(tmp_path, pair, RepoMode.BARE_USER, with_v1=False)
    assert apply_offline(dst, res.path / "superblock").commit == pair.v2
    assert dst.fsck().ok


def test_filename_output_and_small_chunks(tmp_path: Path, pair: Pair) -> None:
    out = tmp_path / "usb" / "update.delta"
    out.parent.mkdir()
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=replace(NO_FALLBACK, max_chunk_size=100_000),
                         filename=out)
    assert len(res.superblock.parts) > 2
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["update.delta", *map(str, range(len(res.superblock.parts)))])
    assert not list_deltas(pair.repo)  # nothing written into the repository
    dst = _target(tmp_path, pair, RepoMode.ARCHIVE)
    apply_offline(dst, out)
    assert dst.fsck().ok


def test_fallbacks_must_be_present_offline(tmp_path: Path, pair: Pair) -> None:
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=DeltaOptions(min_fallback_size=200_000))
    sb = res.superblock
    assert len(sb.fallbacks) == 1 and sb.fallbacks[0].uncompressed_size == 300_000
    dst = _target(tmp_path, pair, RepoMode.BARE_USER)
    before = _objects(dst)
    with pytest.raises(DeltaError, match="fallback"):
        apply_offline(dst, res.path / "superblock")
    assert _objects(dst) == before
    # with the fallback fetched, the same delta applies
    fb = sb.fallbacks[0]
    filez = pair.repo.object_path(ObjectType.FILE, fb.checksum).read_bytes()

    def fetch(missing: object) -> None:
        txn.write_archived_file(filez, fb.checksum)

    with dst.transaction() as txn:
        apply_delta(dst, txn, sb, lambda i, e: (res.path / str(i)).read_bytes(), fetch_fallbacks=fetch)
    assert dst.fsck().ok


def test_fallback_with_wrong_checksum_is_refused(tmp_path: Path, pair: Pair) -> None:
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=DeltaOptions(min_fallback_size=200_000))
    sb = res.superblock
    other = next(c for p, k, c, _ in pair.repo.walk_tree(pair.v2) if p.endswith("tool"))
    wrong = pair.repo.object_path(ObjectType.FILE, other).read_bytes()
    dst = _target(tmp_path, pair, RepoMode.BARE_USER)
    before = _objects(dst)
    with pytest.raises(ChecksumMismatch), dst.transaction() as txn:
        apply_delta(dst, txn, sb, lambda i, e: (res.path / str(i)).read_bytes(),
                    fetch_fallbacks=lambda m: txn.write_archived_file(wrong, sb.fallbacks[0].checksum))
    assert _objects(dst) == before


def test_store_list_delete_reindex(pair: Pair) -> None:
    a = generate_delta(pair.repo, pair.v2, from_commit=pair.v1).name
    b = generate_delta(pair.repo, pair.v2).name
    assert [d.name for d in list_deltas(pair.repo)] == sorted([a, b], key=str)
    reindex(pair.repo)
    assert list_indexes(pair.repo) == [pair.v2]
    index = decode_delta_index((pair.repo.path / delta_index_relpath(pair.v2)).read_bytes())
    sb_bytes = (pair.repo.path / a.superblock_relpath).read_bytes()
    assert index[str(a)] == hashlib.sha256(sb_bytes).digest() and str(b) in index
    delete_delta(pair.repo, a)
    delete_delta(pair.repo, b)
    reindex(pair.repo)
    assert list_deltas(pair.repo) == [] and list_indexes(pair.repo) == []


# --- bad input: one typed error, nothing published -----------------------------------------------


def _bad(tmp_path: Path, pair: Pair, sb: Superblock, parts: dict[int, bytes], exc: type[Exception], match: str) -> None:
    d = tmp_path / f"bad-{os.urandom(3).hex()}"
    d.mkdir()
    (d / "superblock").write_bytes(sb.to_bytes())
    for i, data in parts.items():
        (d / str(i)).write_bytes(data)
    dst = _target(tmp_path, pair, RepoMode.BARE_USER)
    before = _objects(dst)
    with pytest.raises(exc, match=match):
        apply_offline(dst, d / "superblock")
    assert _objects(dst) == before
    assert not dst.has_object(ObjectType.COMMIT, pair.v2)


Made = tuple[Pair, Superblock, dict[int, bytes]]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """One delta for all bad-input tests (each corrupts its own copy of it)."""
    pair = make_pair(tmp_path_factory.mktemp("made"))
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=NO_FALLBACK)
    return pair, res.superblock, {i: (res.path / str(i)).read_bytes() for i in range(len(res.superblock.parts))}


def test_corrupt_part(tmp_path: Path, made: Made) -> None:
    pair, sb, parts = made
    data = bytearray(parts[0])
    data[len(data) // 2] ^= 0xFF
    _bad(tmp_path, pair, sb, {0: bytes(data)}, DeltaFormatError, "wrong checksum")


def test_truncated_part(tmp_path: Path, made: Made) -> None:
    pair, sb, parts = made
    _bad(tmp_path, pair, sb, {0: parts[0][:-10]}, DeltaFormatError, "superblock says")


def test_part_larger_than_declared(tmp_path: Path, made: Made) -> None:
    pair, sb, parts = made
    _bad(tmp_path, pair, sb, {0: parts[0] + b"\0" * 4096}, DeltaFormatError, "superblock says")


def test_wrong_part_checksum_in_superblock(tmp_path: Path, made: Made) -> None:
    pair, sb, parts = made
    bad_sb = replace(sb, parts=(replace(sb.parts[0], checksum=b"\1" * 32), *sb.parts[1:]))
    _bad(tmp_path, pair, bad_sb, parts, DeltaFormatError, "wrong checksum")


def _with_part(sb: Superblock, index: int, part: PartPayload, objects: object = None) -> tuple[Superblock, bytes]:
    data = encode_part(part, Compression.NONE)
    entry = replace(sb.parts[index], checksum=part_digest(data), size=len(data))
    if objects is not None:
        entry = replace(entry, objects=objects)  # type: ignore[arg-type]
    return replace(sb, parts=(*sb.parts[:index], entry, *sb.parts[index + 1 :])), data


def test_operation_past_its_buffer(tmp_path: Path, made: Made) -> None:
    pair, sb, parts = made
    part = decode_part(parts[0], max_size=1 << 30)
    w = OpWriter()
    w.splice_meta(100, len(part.payload))  # reads past the payload
    bad_sb, data = _with_part(sb, 0, replace(part, operations=w.to_bytes()), objects=sb.parts[0].objects[:1])
    _bad(tmp_path, pair, bad_sb, {0: data}, DeltaFormatError, "past the payload")


def test_write_past_its_source(tmp_path: Path, made: Made) -> None:
    pair, sb, parts = made
    part = decode_part(parts[0], max_size=1 << 30)
    rollsum_obj = next(o for o in sb.parts[0].objects if o[0] is ObjectType.FILE)
    src_off = len(part.payload)
    payload = part.payload + bytes.fromhex(pair_v1_file(pair, "big.txt"))
    w = OpWriter()
    w.open(0, 0, 10)
    w.set_read_source(src_off)
    w.write(10, 10**9)  # far past the old object
    w.close()
    bad_sb, data = _with_part(sb, 0, replace(part, payload=payload, operations=w.to_bytes()), objects=(rollsum_obj,))
    _bad(tmp_path, pair, bad_sb, {0: data}, DeltaFormatError, "past its source")


def pair_v1_file(pair: Pair, suffix: str) -> str:
    return next(c for p, k, c, _ in pair.repo.walk_tree(pair.v1) if p.endswith(suffix))


def test_bsdiff_producing_the_wrong_object(tmp_path: Path, made: Made) -> None:
    pair, sb, parts = made
    # Re-point the bsdiff object's name at another checksum: the patch output no longer matches.
    for i, entry in enumerate(sb.parts):
        part = decode_part(parts[i], max_size=1 << 30)
        ops = decode_operations(part.operations, entry.objects, payload_size=len(part.payload),
                                n_modes=len(part.modes), n_xattrs=len(part.xattrs))
        opens = [op for op in ops if type(op).__name__ == "Open"]
        bs = [op for op in ops if isinstance(op, Bspatch)]
        if bs:
            target = opens[-1].obj  # type: ignore[attr-defined]
            objects = list(entry.objects)
            objects[target] = (ObjectType.FILE, "0" * 64)
            bad_sb, data = _with_part(sb, i, part, objects=tuple(objects))
            _bad(tmp_path, pair, bad_sb, {**parts, i: data}, ChecksumMismatch, "checksum mismatch")
            return
    pytest.fail("no bsdiff operation in the delta")


def test_to_commit_mismatch(tmp_path: Path, made: Made) -> None:
    pair, sb, parts = made
    _bad(tmp_path, pair, replace(sb, to_commit=pair.v1), parts, ChecksumMismatch, "delta commit")


def test_missing_source_commit(tmp_path: Path, made: Made) -> None:
    pair, sb, _parts = made
    d = tmp_path / "d"
    d.mkdir()
    (d / "superblock").write_bytes(sb.to_bytes())
    dst = _target(tmp_path, pair, RepoMode.BARE_USER, with_v1=False)
    with pytest.raises(DeltaError, match="source commit"):
        apply_offline(dst, d / "superblock")


# --- bootree's own format -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [RepoMode.BARE_USER, RepoMode.ARCHIVE])
def test_bootree_format_delta(tmp_path: Path, pair: Pair, mode: RepoMode) -> None:
    ostree_res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=NO_FALLBACK)
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=replace(NO_FALLBACK, format="bootree"))
    assert res.path.parent.parent.name == "bootree-deltas" and res.name == ostree_res.name
    # the gzip'd manual page and the initramfs, diffed uncompressed; the initramfs's new library
    # is copied from the library this delta writes itself
    assert res.recompressed_objects == 2 and res.reads_own_objects == 1
    assert res.modified > ostree_res.modified  # the moved file is matched by content
    assert all(p.version == 1 for p in res.superblock.parts)
    assert res.superblock.total_size < ostree_res.superblock.total_size
    assert [d.name for d in list_deltas(pair.repo)] == [ostree_res.name]  # ostree's directory is untouched
    dst = _target(tmp_path, pair, mode)
    assert apply_offline(dst, res.path / "superblock").commit == pair.v2
    assert dst.fsck().ok


@pytest.mark.parametrize(
    ("compression", "refused"), [(Compression.NONE, "unknown delta operation"), (None, "unknown delta part compression 0x7a")]
)
def test_bootree_opcodes_are_refused_in_ostree_parts(
    tmp_path: Path, pair: Pair, compression: int | None, refused: str
) -> None:
    """bootree's operations, and its zstd parts (the default), only in version-1 parts."""
    options = replace(NO_FALLBACK, format="bootree")
    if compression is not None:
        options = replace(options, compression=compression)
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=options)
    sb = res.superblock
    parts = {i: (res.path / str(i)).read_bytes() for i in range(len(sb.parts))}
    assert {data[:1] for data in parts.values()} == {b"\0" if compression is not None else b"z"}
    as_v0 = replace(sb, parts=tuple(replace(p, version=0) for p in sb.parts))
    _bad(tmp_path, pair, as_v0, parts, DeltaFormatError, refused)


def test_bootree_format_rebuilds_a_large_gzip_object_in_pieces(
    tmp_path: Path, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The initramfs is cut into pieces (gz2 parameters) that the client compresses on both
    cores and joins; the result still verifies and fscks."""
    monkeypatch.setattr(deflateblocks, "_MIN_SPLIT", 1 << 14)
    monkeypatch.setattr(deflateblocks, "_PIECE", 1 << 14)
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=replace(NO_FALLBACK, format="bootree"))
    parts = [(res.path / str(i)).read_bytes() for i in range(len(res.superblock.parts))]
    assert any(b"gz2" in bytes(decode_any_part(p, version=1, max_size=1 << 26).payload) for p in parts)
    dst = _target(tmp_path, pair, RepoMode.BARE_USER)
    assert apply_offline(dst, res.path / "superblock").commit == pair.v2
    assert dst.fsck().ok


def test_bootree_format_reaches_its_slow_recompression_first(tmp_path: Path, pair: Pair) -> None:
    """The object built from the delta's own new objects (the initramfs) comes right after
    those sources and ends the first part; metadata comes last: the client starts the
    object's recompression as early as it can."""
    from bootree.format.checksum import from_raw
    from bootree.format.delta import BOOTREE_PREFETCH_KEY
    from bootree.format.deltaops import Open, SetReadSource

    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=replace(NO_FALLBACK, format="bootree"))
    sb = res.superblock
    assert len(sb.parts) >= 2
    order = [t for p in sb.parts for t, _c in p.objects]
    first_meta = next(i for i, t in enumerate(order) if t is not ObjectType.FILE)
    assert all(t is not ObjectType.FILE for t in order[first_meta:])
    first = sb.parts[0]
    part = decode_any_part((res.path / "0").read_bytes(), version=1, max_size=1 << 30)
    ops = decode_operations(part.operations, first.objects, payload_size=len(part.payload),
                            n_modes=len(part.modes), n_xattrs=len(part.xattrs), extensions=True)
    last_open = [op for op in ops if isinstance(op, Open)][-1]
    assert last_open.inner_size is not None and last_open.obj == len(first.objects) - 1
    reads = {from_raw(bytes(part.payload[op.offset : op.offset + 32])) for op in ops if isinstance(op, SetReadSource)}
    assert reads & {c for _t, c in first.objects[:-1]}  # its own sources, written just before it
    # the old initramfs it reads decompressed is named in the superblock, for an early start
    hint = sb.get(BOOTREE_PREFETCH_KEY)
    assert isinstance(hint, bytes) and hint and len(hint) % 32 == 0
    hinted = {from_raw(hint[i : i + 32]) for i in range(0, len(hint), 32)}
    assert hinted <= reads and all(pair.repo.has_object(ObjectType.FILE, c) for c in hinted)
    assert not hinted & {c for _t, c in sb.parts[0].objects}
    dst = _target(tmp_path, pair, RepoMode.BARE_USER)
    assert apply_offline(dst, res.path / "superblock").commit == pair.v2
    assert dst.fsck().ok


def test_an_initramfs_made_of_tree_files_does_not_read_its_old_self(tmp_path: Path) -> None:
    """When the tree's files hold (nearly) everything in the new initramfs, its chunks are read
    from those files and the old initramfs is not decompressed at all (no ``U`` source, no
    prefetch hint): the few chunks only it had travel as literals."""
    import gzip
    import random

    from bootree.format.checksum import from_raw
    from bootree.format.delta import BOOTREE_PREFETCH_KEY
    from bootree.format.deltaops import SetReadSource
    from builders import File, make_tree
    from delta_builders import newc_cpio

    rng = random.Random(11)
    lib_old, tool = rng.randbytes(200_000), rng.randbytes(150_000)
    lib_new = bytearray(lib_old)
    lib_new[1000:1010] = b"0123456789"
    own = rng.randbytes(3000)  # in the initramfs only: under a sixteenth of its contents

    def tree(lib: bytes, kver: str) -> dict[str, object]:
        image = gzip.compress(newc_cpio({"usr/lib/libz.so": lib, "usr/bin/tool": tool, "etc/own": own}), mtime=0)
        return {"usr/lib/libz.so": File(lib), "usr/bin/tool": File(tool, 0o755),
                f"usr/lib/modules/{kver}/initramfs.img": File(image, 0o600)}

    repo = Repo.init(tmp_path / "src", mode=RepoMode.ARCHIVE)
    v1 = repo.commit([make_tree(tmp_path / "t1", tree(lib_old, "1.0-1"))], branch="os", subject="v1", timestamp=1)
    v2 = repo.commit([make_tree(tmp_path / "t2", tree(bytes(lib_new), "1.0-2"))], branch="os", subject="v2", timestamp=2)
    res = generate_delta(repo, v2, from_commit=v1, options=replace(NO_FALLBACK, format="bootree"))
    assert res.recompressed_objects == 1 and res.reads_own_objects == 1
    assert res.superblock.get(BOOTREE_PREFETCH_KEY) is None
    reads = []
    for i, entry in enumerate(res.superblock.parts):
        part = decode_any_part((res.path / str(i)).read_bytes(), version=1, max_size=1 << 26)
        ops = decode_operations(part.operations, entry.objects, payload_size=len(part.payload),
                                n_modes=len(part.modes), n_xattrs=len(part.xattrs), extensions=True)
        reads += [(from_raw(bytes(part.payload[op.offset : op.offset + 32])), op.decompressed)
                  for op in ops if isinstance(op, SetReadSource)]
    assert reads and not any(decompressed for _c, decompressed in reads)
    dst = Repo.init(tmp_path / "dst", mode=RepoMode.BARE_USER)
    pull_local(dst, repo.path, [v1])
    assert apply_offline(dst, res.path / "superblock").commit == v2
    assert dst.fsck().ok


@pytest.mark.parametrize("hint", [b"\x01" * 32 + b"\x02" * 32, b"\x03" * 31, b"\x04" * 32 * 40])
def test_a_wrong_prefetch_hint_is_only_a_hint(tmp_path: Path, pair: Pair, hint: bytes) -> None:
    """Unknown objects, a malformed value or too many names: the delta still applies."""
    from bootree.format.delta import BOOTREE_PREFETCH_KEY
    from bootree.format.gvariant import Variant

    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=replace(NO_FALLBACK, format="bootree"))
    sb = res.superblock
    meta = tuple((k, Variant("ay", hint) if k == BOOTREE_PREFETCH_KEY else v) for k, v in sb.metadata)
    d = tmp_path / "hinted"
    d.mkdir()
    (d / "superblock").write_bytes(replace(sb, metadata=meta).to_bytes())
    for i in range(len(sb.parts)):
        (d / str(i)).write_bytes((res.path / str(i)).read_bytes())
    dst = _target(tmp_path, pair, RepoMode.BARE_USER)
    assert apply_offline(dst, d / "superblock").commit == pair.v2
    assert dst.fsck().ok


def test_bootree_format_stores_incompressible_objects_and_closes_small_parts(
    tmp_path: Path, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The random new file goes to an uncompressed part of its own (xz would find nothing in
    it); parts close at the bootree format's part size; the client applies it all in order."""
    monkeypatch.setattr(parts, "_MIN_STORED", 1 << 17)
    monkeypatch.setattr(parts, "BOOTREE_PART_SIZE", 1 << 13)
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=replace(NO_FALLBACK, format="bootree"))
    files = [(res.path / str(i)).read_bytes() for i in range(len(res.superblock.parts))]
    stored = [i for i, f in enumerate(files) if f[0] == Compression.NONE]
    assert stored and all(files[i][0] == ZSTD for i in range(len(files)) if i not in stored)  # zstd: format 2
    assert len(files) - len(stored) > 2  # small parts
    huge = (tmp_path / "t2/usr/share/new/huge.bin").read_bytes()
    assert [huge in decode_part(files[i], max_size=1 << 26).payload for i in stored] == [True]
    dst = _target(tmp_path, pair, RepoMode.BARE_USER)
    assert apply_offline(dst, res.path / "superblock").commit == pair.v2
    assert dst.fsck().ok
