"""The transaction's verified-write contract, in every mode: nothing unproven becomes visible.

A wrong checksum, a truncated or malformed object, a write that fails half-way or a writer left
without finishing never produces a file under ``objects/``, not even through a checkpoint or an
early publish; a correct object streamed in any chunking does, and reads back as written.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bootree.errors import ChecksumMismatch, CorruptObject, RepoError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming, deflate_chunks, encode_archive_header
from bootree.format.objects import DirMeta, FileHeader
from bootree.format.verified import VerifiedContent, VerifiedMetadata
from bootree.repo import Repo, RepoMode, contentio

HEADER = FileHeader(0, 0, 0o100644)
LINK = FileHeader(0, 0, 0o120777, 0, "some/target")
MODES = [RepoMode.ARCHIVE, RepoMode.BARE_USER, RepoMode.BARE_USER_ONLY, RepoMode.BARE]


@pytest.fixture(params=MODES, ids=lambda m: m.value)
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repo:
    mode: RepoMode = request.param
    if mode is RepoMode.BARE and os.geteuid() != 0:
        pytest.skip("bare repositories need root (file ownership)")
    return Repo.init(tmp_path / "repo", mode=mode)


def _objects(repo: Repo) -> set[tuple[ObjectType, Checksum]]:
    return set(repo.store.iter_objects())


def _staging_files(repo: Repo) -> list[str]:
    return [f for d in (repo.path / "tmp").glob("staging-*") if d.is_dir() for f in os.listdir(d)]


def _filez(header: FileHeader, content: bytes) -> bytes:
    body = b"" if header.is_symlink else b"".join(deflate_chunks([content]))
    return encode_archive_header(header, len(content)) + body


def _framed(framing: ContentFraming, header: FileHeader, content: bytes) -> bytes:
    return _filez(header, content) if framing is ContentFraming.ARCHIVED else header.checksum_prefix() + content


def test_content_writer_stages_only_a_proven_object(repo: Repo) -> None:
    content = os.urandom(300_000)
    good = HEADER.checksum(content)
    with repo.transaction() as txn:
        with pytest.raises(ChecksumMismatch), txn.content_writer(HEADER, len(content), HEADER.checksum(b"x")) as w:
            w.write(content)
            w.finish()
        with txn.content_writer(HEADER, len(content) + 1, None) as w:  # a source that shrank
            w.write(content)
            with pytest.raises(RepoError, match="changed"):
                w.finish()
        with txn.content_writer(HEADER, len(content), good) as w:  # left without finish()
            w.write(content[:1000])
        assert _staging_files(repo) == []
        txn.checkpoint()
        assert _objects(repo) == set()
        with txn.content_writer(HEADER, len(content), None) as w:
            for i in range(0, len(content), 65536):
                w.write(content[i : i + 65536])
            assert w.finish() == good
    assert _objects(repo) == {(ObjectType.FILE, good)}
    assert repo.load_file(good) == (HEADER, content)
    assert repo.fsck().ok


@pytest.mark.parametrize("framing", list(ContentFraming), ids=lambda f: f.value)
@pytest.mark.parametrize("header", [HEADER, LINK], ids=["file", "symlink"])
def test_stream_content_verifies_as_it_writes(repo: Repo, framing: ContentFraming, header: FileHeader) -> None:
    content = b"" if header.is_symlink else os.urandom(200_000) + b"\0" * 100_000
    csum = header.checksum(content)
    data = _framed(framing, header, content)
    with repo.transaction() as txn:
        for bad, error in (
            (data[:-1] if len(data) > 40 else data[:5], (CorruptObject, ChecksumMismatch)),
            (data + b"\0", (CorruptObject, ChecksumMismatch)),
            (data[:8] + b"\xff" * (len(data) - 8), (CorruptObject, ChecksumMismatch)),
        ):
            with pytest.raises(error), txn.stream_content(framing, csum) as w:
                w.write(bad)
                w.finish()
        with pytest.raises(ChecksumMismatch), txn.stream_content(framing, HEADER.checksum(b"other")) as w:
            w.write(data)
            w.finish()
        assert _staging_files(repo) == []
        txn.checkpoint()
        assert _objects(repo) == set()
        with txn.stream_content(framing, csum) as w:
            for i in range(0, len(data), 7777):
                w.write(data[i : i + 7777])
            assert w.finish() == csum
    assert _objects(repo) == {(ObjectType.FILE, csum)}
    assert repo.load_file(csum) == (header, content)
    repo.store.verify_file(csum)
    if framing is ContentFraming.ARCHIVED and repo.mode is RepoMode.ARCHIVE:
        # an archive repository keeps the received .filez as it is
        assert repo.object_path(ObjectType.FILE, csum).read_bytes() == data


def test_verified_values_write_without_rehash(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"data" * 1000
    obj = VerifiedContent.parse_archived(_filez(HEADER, content), HEADER.checksum(content))
    meta = VerifiedMetadata.of(DirMeta(0, 0, 0o40755))
    import hashlib

    def no_hash(*a: object, **k: object) -> object:
        raise AssertionError("a verified value is hashed again")

    with repo.transaction() as txn:
        monkeypatch.setattr(hashlib, "sha256", no_hash)
        assert txn.write_content(obj) == obj.checksum
        assert txn.write_metadata(meta) == meta.checksum
        monkeypatch.undo()
    assert repo.load_file(obj.checksum) == (HEADER, content)
    assert repo.read_dirmeta(meta.checksum) == meta.value


@pytest.mark.parametrize("what", ["content", "metadata", "stream"])
def test_failed_write_is_never_published(repo: Repo, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    # ENOSPC half-way through an object: the claim and its file go, a checkpoint publishes
    # nothing of it, and the commit publishes the objects that did complete.
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    content = os.urandom(100_000)
    with repo.transaction() as txn:
        ok = txn.write_content(VerifiedContent.of(HEADER, b"first"))
        monkeypatch.setattr(contentio.os, "write", full_disk)
        calls["n"] = 1
        with pytest.raises(OSError, match="No space"):
            if what == "content":
                txn.write_content(VerifiedContent.of(HEADER, content))
            elif what == "metadata":
                txn.write_metadata(VerifiedMetadata.of(DirMeta(0, 0, 0o40700)))
            else:
                with txn.stream_content(ContentFraming.STREAM, HEADER.checksum(content)) as w:
                    w.write(HEADER.checksum_prefix() + content)
                    w.finish()
        monkeypatch.undo()
        assert len(_staging_files(repo)) == 1  # only the object that completed
        txn.checkpoint()
        assert _objects(repo) == {(ObjectType.FILE, ok)}
    assert _objects(repo) == {(ObjectType.FILE, ok)}
    for _, c in _objects(repo):
        assert os.lstat(repo.object_path(ObjectType.FILE, c)).st_size > 0 or repo.mode is not RepoMode.ARCHIVE
    assert repo.fsck().ok


def test_zero_length_or_short_objects_are_not_trusted(repo: Repo) -> None:
    meta = VerifiedMetadata.of(DirMeta(0, 0, 0o40755))
    with repo.transaction() as txn:
        txn.write_metadata(meta)
        c = txn.write_file(HEADER, b"abc")
    assert repo.has_object(ObjectType.DIR_META, meta.checksum)
    path = repo.object_path(ObjectType.DIR_META, meta.checksum)
    path.write_bytes(b"")  # what a failed write of old left behind
    assert not repo.has_object(ObjectType.DIR_META, meta.checksum)
    with repo.transaction() as txn:
        assert not txn.has_object(ObjectType.DIR_META, meta.checksum)
        assert not txn.has_object_indexed(ObjectType.DIR_META, meta.checksum)
        txn.write_metadata(meta)
    assert path.read_bytes() == meta.data
    if repo.mode is RepoMode.ARCHIVE:
        fpath = repo.object_path(ObjectType.FILE, c)
        fpath.write_bytes(fpath.read_bytes()[:10])
        assert not repo.has_object(ObjectType.FILE, c)
