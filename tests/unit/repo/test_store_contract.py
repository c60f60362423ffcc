"""One contract for every object store: the four disk modes and the in-memory double.

Like dulwich's ObjectStoreTests, each test below runs against every store, through the
interfaces of ``bootree.repo.store`` only (``ObjectStore`` to read, ``ObjectWriter`` to write):
what one store does, all do. The verified-write part of the contract: a wrong checksum, a
malformed or truncated object and an unfinished or failed write never become visible; writes
are invisible until checkpoint or commit, and an abort leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootree.errors import ChecksumMismatch, CorruptObject, ObjectMissing, RepoError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming, deflate_chunks, encode_archive_header
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader
from bootree.format.verified import VerifiedContent, VerifiedMetadata
from bootree.repo import Repo, RepoMode
from bootree.repo.memstore import MemoryObjectStore
from bootree.repo.store import ObjectStore, ObjectWriter

HEADER = FileHeader(0, 0, 0o100644)
EXEC = FileHeader(0, 0, 0o100755, 0, "", ((b"user.k", b"v"),))
LINK = FileHeader(0, 0, 0o120777, 0, "../target")


@dataclass
class Store:
    """A store under test and how to open a batch of writes on it."""

    name: str
    store: ObjectStore
    begin: Callable[[], contextlib.AbstractContextManager[ObjectWriter]]


def _disk(tmp_path: Path, mode: RepoMode) -> Store:
    repo = Repo.init(tmp_path / "repo", mode=mode)
    return Store(mode.value, repo.store, repo.transaction)


def _memory() -> Store:
    mem = MemoryObjectStore()
    return Store("memory", mem, mem.begin)


KINDS = ["archive", "bare", "bare-user", "bare-user-only", "memory"]


@pytest.fixture(params=KINDS)
def s(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    kind: str = request.param
    if kind == "memory":
        yield _memory()
        return
    if kind == "bare" and os.geteuid() != 0:
        pytest.skip("bare repositories need root (file ownership)")
    yield _disk(tmp_path, RepoMode.parse(kind))


def _filez(header: FileHeader, content: bytes) -> bytes:
    body = b"" if header.is_symlink else b"".join(deflate_chunks([content]))
    return encode_archive_header(header, len(content)) + body


def _objects(s: Store) -> set[tuple[ObjectType, Checksum]]:
    return set(s.store.iter_objects())


META = VerifiedMetadata.of(DirMeta(0, 0, 0o40755))
TREE = VerifiedMetadata.of(DirTree(files=(("f", HEADER.checksum(b"x")),)))
COMMIT = VerifiedMetadata.of(Commit(root_tree=TREE.checksum, root_meta=META.checksum, subject="s", timestamp=3))


def test_empty_store(s: Store) -> None:
    csum = HEADER.checksum(b"x")
    assert _objects(s) == set()
    for otype in (ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.COMMIT):
        assert not s.store.has(otype, csum)
    with pytest.raises(ObjectMissing):
        s.store.load_metadata(ObjectType.DIR_TREE, csum)
    with pytest.raises(ObjectMissing):
        s.store.open_file(csum)
    with pytest.raises(ObjectMissing):
        s.store.load_file(csum)


def test_metadata_round_trip(s: Store) -> None:
    with s.begin() as w:
        for obj in (META, TREE, COMMIT):
            assert w.write_metadata(obj) == obj.checksum
        assert w.write_metadata(META) == META.checksum  # twice is fine
    assert _objects(s) == {(o.otype, o.checksum) for o in (META, TREE, COMMIT)}
    for obj in (META, TREE, COMMIT):
        assert s.store.has(obj.otype, obj.checksum)
        assert s.store.load_metadata(obj.otype, obj.checksum) == obj.data
        assert not s.store.has(ObjectType.FILE, obj.checksum)


@pytest.mark.parametrize(
    ("header", "content"),
    [(HEADER, b""), (HEADER, b"hello"), (EXEC, os.urandom(1 << 20) + b"\0" * 5000), (LINK, b"")],
    ids=["empty", "small", "large-xattr", "symlink"],
)
def test_content_round_trip(s: Store, header: FileHeader, content: bytes) -> None:
    if header.xattrs and s.name == "bare-user-only":
        header = FileHeader(0, 0, 0o100755)  # that mode stores no xattrs (as ostree)
    with s.begin() as w:
        csum = w.write_file(header, None if header.is_symlink else content)
        assert w.has_object(ObjectType.FILE, csum)
    assert csum == header.checksum(content)
    assert _objects(s) == {(ObjectType.FILE, csum)}
    got_header, got = s.store.load_file(csum)
    assert got == content
    assert got_header.symlink_target == header.symlink_target
    assert got_header.mode == header.mode or s.name == "bare-user-only"
    with s.store.open_file(csum) as obj:
        assert obj.header == got_header
        assert (obj.stream is None) == header.is_symlink
        assert obj.size == (0 if header.is_symlink else len(content))
    assert s.store.content_size(csum) == (len(content) if not header.is_symlink else s.store.content_size(csum))
    s.store.verify_file(csum)


@pytest.mark.parametrize("framing", list(ContentFraming), ids=lambda f: f.value)
def test_streamed_content_and_verified_values(s: Store, framing: ContentFraming) -> None:
    content = os.urandom(150_000)
    csum = HEADER.checksum(content)
    data = _filez(HEADER, content) if framing is ContentFraming.ARCHIVED else HEADER.checksum_prefix() + content
    small = VerifiedContent.parse_archived(_filez(HEADER, b"abc"), HEADER.checksum(b"abc"))
    with s.begin() as w:
        with w.stream_content(framing, csum) as sw:
            for i in range(0, len(data), 4096):
                sw.write(data[i : i + 4096])
            assert sw.finish() == csum
        assert w.write_content(small) == small.checksum
        with w.content_writer(LINK, 0, LINK.checksum()) as cw:
            assert cw.finish() == LINK.checksum()
    assert _objects(s) == {(ObjectType.FILE, c) for c in (csum, small.checksum, LINK.checksum())}
    assert s.store.load_file(csum) == (HEADER, content)
    assert s.store.load_file(small.checksum)[1] == b"abc"


def test_writes_are_invisible_until_commit_and_abort_drops_them(s: Store) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), s.begin() as w:
        w.write_metadata(META)
        w.write_file(HEADER, b"content")
        assert w.has_object(ObjectType.DIR_META, META.checksum)
        assert not s.store.has(ObjectType.DIR_META, META.checksum)
        raise Boom
    assert _objects(s) == set()
    with s.begin() as w:
        w.write_metadata(META)
        w.checkpoint()
        assert s.store.has(ObjectType.DIR_META, META.checksum)  # checkpoint publishes
        w.write_metadata(TREE)
        assert not s.store.has(ObjectType.DIR_TREE, TREE.checksum)
    assert s.store.has(ObjectType.DIR_TREE, TREE.checksum)


def test_wrong_or_broken_objects_never_become_visible(s: Store) -> None:
    content = os.urandom(70_000)
    csum = HEADER.checksum(content)
    other = HEADER.checksum(b"other")
    filez = _filez(HEADER, content)
    cases: list[tuple[ContentFraming, bytes, Checksum]] = [
        (ContentFraming.ARCHIVED, filez, other),  # right bytes, wrong name
        (ContentFraming.ARCHIVED, filez[:-3], csum),  # truncated
        (ContentFraming.ARCHIVED, filez + b"junk", csum),  # trailing data
        (ContentFraming.ARCHIVED, b"\0" * 3, csum),  # not even a header
        (ContentFraming.STREAM, HEADER.checksum_prefix() + content[:-1], csum),
        (ContentFraming.STREAM, LINK.checksum_prefix() + b"body", LINK.checksum()),  # symlink with a body
    ]
    with s.begin() as w:
        for framing, data, expected in cases:
            with pytest.raises((ChecksumMismatch, CorruptObject)), w.stream_content(framing, expected) as sw:
                sw.write(data)
                sw.finish()
        with pytest.raises(ChecksumMismatch), w.content_writer(HEADER, len(content), other) as cw:
            cw.write(content)
            cw.finish()
        with pytest.raises(RepoError), w.content_writer(HEADER, len(content) + 1) as cw:
            cw.write(content)
            cw.finish()
        with w.content_writer(HEADER, len(content), csum) as cw:  # never finished
            cw.write(content)
        with pytest.raises(ChecksumMismatch):
            w.write_file(HEADER, content, other)
        with pytest.raises(CorruptObject):
            w.write_metadata(VerifiedMetadata.parse(ObjectType.DIR_TREE, b"\x05not a tree"))
        w.checkpoint()
        assert _objects(s) == set()
    assert _objects(s) == set()
    for _, _data, expected in cases:
        assert not s.store.has(ObjectType.FILE, expected)


def test_delete(s: Store) -> None:
    with s.begin() as w:
        c = w.write_file(HEADER, b"gone soon")
        w.write_metadata(META)
    s.store.delete(ObjectType.FILE, c)
    s.store.delete(ObjectType.FILE, c)  # absent: no error
    assert _objects(s) == {(ObjectType.DIR_META, META.checksum)}
    s.store.delete(ObjectType.DIR_META, META.checksum)
    assert _objects(s) == set()
