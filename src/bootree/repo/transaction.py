"""Transactions: stage objects in ``tmp/``, then publish them and move refs in one step.

Layer: repo. Every write to a repository goes through a :class:`Transaction`:

1. objects are written to ``tmp/staging-<random>/`` (never directly under ``objects/``), each
   verified against the checksum it is announced under;
2. :meth:`Transaction.commit` flushes the filesystem (one ``syncfs``), renames every staged
   object into ``objects/`` (an object is either absent or complete), flushes again, and only
   then writes detached metadata, clears ``commitpartial`` markers and moves refs;
3. :meth:`Transaction.abort` (or an exception in the ``with`` block) deletes the staging
   directory: the repository is exactly as before.

A crash at any point leaves at worst a stale staging directory, which the next transaction of
bootree or ostree expires. Writers may call the ``write_*`` methods from several threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from bootree import _fs
from bootree.errors import ChecksumMismatch, CorruptObject, FormatError, RepoError
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader, ObjectType
from bootree.format.refspec import RefSpec, parse_refspec
from bootree.repo.objectstore import CHUNK, ObjectIndex

if TYPE_CHECKING:
    from bootree.repo.repo import Repo

__all__ = ["Transaction"]

log = logging.getLogger(__name__)

_PARSERS: dict[ObjectType, Callable[[bytes], object]] = {
    ObjectType.COMMIT: Commit.from_bytes,
    ObjectType.DIR_TREE: DirTree.from_bytes,
    ObjectType.DIR_META: DirMeta.from_bytes,
}


#: Publishing order by object file extension (see Transaction._publish_objects).
_PUBLISH_ORDER = {"file": 0, "filez": 0, "dirmeta": 1, "dirtree": 2, "commit": 3}


def _flat(rel: str) -> str:
    """The staged name of the object at ``rel``: ``ab/cdef….file`` is staged as ``abcdef….file``.

    One flat staging directory instead of ostree's 256 prefix directories: nothing to create
    per prefix while writing, and an empty directory to remove after publishing.
    """
    return rel[:2] + rel[3:]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "noboot"


class Transaction:
    """A set of object writes and ref updates that land together or not at all."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._store = repo.store
        tmp = repo.path / "tmp"
        _fs.makedirs(tmp)
        self.staging = tmp / f"staging-{_boot_id()}-{os.urandom(6).hex()}"
        self.staging.mkdir(mode=0o755)
        self._staging_str = os.fspath(self.staging)
        self._store.prepare_writes()
        self._staged: set[str] = set()
        self._lock = threading.Lock()
        #: Held while objects are flushed and renamed into objects/ (early, checkpoint, commit).
        self._publish_lock = threading.Lock()
        self._made_prefixes: set[str] = set()
        self._renamed_unsynced = False
        self._counter = itertools.count()
        self._refs: dict[str, tuple[RefSpec, Checksum | None]] = {}
        self._commitmeta: dict[Checksum, bytes] = {}
        self._partial_clear: set[Checksum] = set()
        self._done = False
        self._index: ObjectIndex | None = None
        #: Objects written by this transaction (not counting ones already present).
        self.objects_written = 0

    @property
    def finished(self) -> bool:
        """Whether the transaction was committed or aborted."""
        return self._done

    # --- context manager -------------------------------------------------------------------

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # --- presence ----------------------------------------------------------------------------

    def has_object(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object is in the repository or already staged by this transaction."""
        return self._store.relpath(otype, csum) in self._staged or self._store.has(otype, csum)

    def has_object_indexed(self, otype: ObjectType, csum: Checksum) -> bool:
        """:meth:`has_object` for callers asking about thousands of objects (a pull's walk).

        Answers from an :class:`~bootree.repo.objectstore.ObjectIndex` (directory listings)
        instead of one ``lstat`` per object; see there for why a stale answer is harmless.
        """
        rel = self._store.relpath(otype, csum)
        if rel in self._staged:
            return True
        if self._index is None:
            self._index = self._store.index()
        return self._index.has(otype, csum)

    def _tmp(self) -> Path:
        return self.staging / f"tmp-{next(self._counter)}"

    def _reserve(self, otype: ObjectType, csum: Checksum) -> str | None:
        """Claim the staged path of an object about to be written; ``None`` if already claimed.

        Objects whose checksum is known before writing go straight to their staged name: the
        staging directory is private, so a crash mid-write only leaves garbage there.
        """
        rel = self._store.relpath(otype, csum)
        with self._lock:
            if rel in self._staged:
                return None
            self._staged.add(rel)
        self.objects_written += 1
        return f"{self._staging_str}/{_flat(rel)}"

    def _unreserve(self, otype: ObjectType, csum: Checksum) -> None:
        rel = self._store.relpath(otype, csum)
        with self._lock:
            self._staged.discard(rel)
        self.objects_written -= 1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self._staging_str}/{_flat(rel)}")

    def _stage(self, tmp: Path, otype: ObjectType, csum: Checksum) -> None:
        target = self._reserve(otype, csum)
        if target is None:
            os.unlink(tmp)
            return
        _fs.rename(tmp, target)

    # --- object writes -----------------------------------------------------------------------

    def write_metadata(
        self, otype: ObjectType, data: bytes, expected: Checksum | None = None, *, trusted: bool = False
    ) -> Checksum:
        """Write a commit, dirtree or dirmeta object; its bytes are validated first.

        ``trusted`` skips the parse for bytes this process just serialized from a validated
        value; bytes from anywhere else are always parsed.

        Raises:
            ChecksumMismatch: if ``expected`` is given and differs from the bytes' checksum.
            CorruptObject: if the bytes do not parse as ``otype`` (including unsafe names).
        """
        csum = Checksum(hashlib.sha256(data).hexdigest())
        if expected is not None and csum != expected:
            raise ChecksumMismatch(expected, csum, otype.value)
        if self.has_object(otype, csum):
            return csum
        parser = _PARSERS.get(otype)
        if parser is None:
            raise RepoError(f"{otype.value} objects cannot be written with write_metadata")
        if not trusted:
            try:
                parser(data)
            except FormatError as e:
                raise CorruptObject(csum, otype.value, str(e)) from e
        target = self._reserve(otype, csum)
        if target is not None:
            try:
                _fs.write_new(target, data)
            except BaseException:
                self._unreserve(otype, csum)  # a failed write leaves nothing staged under the name
                raise
        return csum

    def write_commit(self, commit: Commit) -> Checksum:
        """Serialize and write a commit object."""
        return self.write_metadata(ObjectType.COMMIT, commit.to_bytes(), trusted=True)

    def write_dirtree(self, tree: DirTree) -> Checksum:
        """Serialize and write a dirtree object."""
        return self.write_metadata(ObjectType.DIR_TREE, tree.to_bytes(), trusted=True)

    def write_dirmeta(self, meta: DirMeta) -> Checksum:
        """Serialize and write a dirmeta object."""
        return self.write_metadata(ObjectType.DIR_META, meta.to_bytes(), trusted=True)

    def write_content_stream(
        self, header: FileHeader, chunks: Iterable[bytes], size: int, expected: Checksum | None = None,
        *, prehashed: bool = False,
    ) -> Checksum:
        """Write a content object from a stream of exactly ``size`` bytes, hashing as it goes.

        With ``prehashed`` the caller vouches that ``expected`` is the checksum of exactly these
        bytes (it hashed them itself); the object is then written straight to its staged name.

        Raises:
            ChecksumMismatch: if ``expected`` is given and the content hashes differently.
        """
        if prehashed and expected is not None:
            target = self._reserve(ObjectType.FILE, expected)
            if target is None:
                return expected
            try:
                self._store.write_content_tmp(target, header, chunks, size, hash_content=False)
            except BaseException:
                self._unreserve(ObjectType.FILE, expected)
                raise
            return expected
        tmp = self._tmp()
        try:
            csum = self._store.write_content_tmp(tmp, header, chunks, size)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        assert csum is not None
        if expected is not None and csum != expected:
            os.unlink(tmp)
            raise ChecksumMismatch(expected, csum, "file")
        if self.has_object(ObjectType.FILE, csum):
            os.unlink(tmp)
            return csum
        self._stage(tmp, ObjectType.FILE, csum)
        return csum

    def write_file(
        self, header: FileHeader, content: bytes | BinaryIO | None = None, expected: Checksum | None = None
    ) -> Checksum:
        """Write a content object from bytes or a binary stream (``None`` for a symlink).

        Objects already present are not rewritten.

        Raises:
            ChecksumMismatch: if ``expected`` is given and differs.
        """
        if content is None or isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content or b"")
            csum = header.checksum(data)
            if expected is not None and csum != expected:
                raise ChecksumMismatch(expected, csum, "file")
            if self.has_object(ObjectType.FILE, csum):
                return csum
            return self.write_content_stream(header, [data] if data else [], len(data), expected=csum, prehashed=True)
        # A stream of unknown length: spool through the staging dir while hashing.
        stream = content
        buf = bytearray()
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            buf += chunk
        return self.write_file(header, bytes(buf), expected)

    def write_archived_file(self, filez: bytes, expected: Checksum) -> Checksum:
        """Verify and store a content object received in archive (``.filez``) form.

        Raises:
            ChecksumMismatch: if it does not hash to ``expected``.
            CorruptObject: if it does not parse.
        """
        if self.has_object(ObjectType.FILE, expected):
            return expected
        tmp = self._tmp()
        try:
            self._store.write_archived_tmp(tmp, filez, expected)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._stage(tmp, ObjectType.FILE, expected)
        return expected

    def write_commitmeta(self, commit: Checksum, data: bytes) -> None:
        """Set a commit's detached metadata (written at commit time, replacing any old one)."""
        self._commitmeta[commit] = bytes(data)

    # --- refs and partial state --------------------------------------------------------------

    def set_ref(self, refspec: str, csum: Checksum | None) -> None:
        """Point ``refspec`` at ``csum`` (``None`` deletes it) when the transaction commits.

        Raises:
            InvalidRefName: for a malformed name (checked now, not at commit).
        """
        spec = parse_refspec(refspec)
        self._refs[str(spec)] = (spec, csum)

    def mark_partial(self, commit: Checksum) -> None:
        """Record now, durably, that ``commit``'s tree may be incomplete (a resumable pull)."""
        self.repo.mark_partial(commit)

    def clear_partial(self, commit: Checksum) -> None:
        """Remove the partial marker of ``commit`` once this transaction's objects are published."""
        self._partial_clear.add(commit)

    # --- publishing ----------------------------------------------------------------------------

    def _publish_objects(self) -> None:
        with self._publish_lock:
            with self._lock:
                # Content first, commits last: a crash part-way leaves only objects nothing refers
                # to, never a commit whose tree is incomplete.
                batch = sorted(self._staged, key=lambda r: (_PUBLISH_ORDER.get(r.rpartition(".")[2], 9), r))
            t0 = time.perf_counter()
            if batch and self.repo.fsync:
                _fs.syncfs(self.staging)
            t1 = time.perf_counter()
            self._rename_in(batch)
            t2 = time.perf_counter()
            if (batch or self._renamed_unsynced) and self.repo.fsync:
                _fs.syncfs(self._store.objects)
            self._renamed_unsynced = False
            if batch:
                log.debug(
                    "published %d objects: syncfs %.2f s, renames %.2f s, syncfs %.2f s",
                    len(batch),
                    t1 - t0,
                    t2 - t1,
                    time.perf_counter() - t2,
                )

    def _rename_in(self, rels: list[str]) -> None:
        objects = self._store.objects
        staging, objects_str = self._staging_str, os.fspath(objects)
        for rel in rels:
            prefix = rel[:2]
            if prefix not in self._made_prefixes:
                (objects / prefix).mkdir(mode=0o755, exist_ok=True)
                self._made_prefixes.add(prefix)
            _fs.rename(f"{staging}/{_flat(rel)}", f"{objects_str}/{rel}")
            if self._index is not None:
                self._index.add(rel)
            with self._lock:
                self._staged.discard(rel)

    def publish_early(self, otype: ObjectType, checksums: Iterable[Checksum]) -> None:
        """Publish content or dirmeta objects that are completely written, before the commit.

        For pulls: every object was verified on arrival, nothing can refer to a content or
        dirmeta object before its dirtree is published (dirtrees and commits wait for
        :meth:`commit`), and the data is flushed (``syncfs``) before the renames. Publishing in
        the background while the rest downloads leaves little for the final flush and renames.
        The caller must not pass an object that is still being written.
        """
        if otype not in (ObjectType.FILE, ObjectType.DIR_META):
            raise RepoError(f"{otype.value} objects are published only by commit()")
        rels = [self._store.relpath(otype, c) for c in checksums]
        with self._publish_lock:
            with self._lock:
                batch = [r for r in rels if r in self._staged]
            if not batch:
                return
            if self.repo.fsync:
                _fs.syncfs(self.staging)
            self._rename_in(batch)
            self._renamed_unsynced = True

    def checkpoint(self) -> None:
        """Publish the objects staged so far, without touching refs.

        Used by pulls so that an interrupted transfer keeps what arrived (every staged object has
        been verified, so publishing early is safe).
        """
        self._publish_objects()

    def commit(self) -> None:
        """Publish staged objects, then detached metadata, partial markers and refs.

        Raises:
            RefConflict: never for plain set_ref; reserved for compare-and-swap callers.
        """
        if self._done:
            raise RepoError("transaction already finished")
        try:
            self._publish_objects()
            for commit, data in self._commitmeta.items():
                path = self._store.path(ObjectType.COMMIT_META, commit)
                _fs.makedirs(path.parent)
                _fs.write_atomic(path, data, fsync=self.repo.fsync)
            for commit in self._partial_clear:
                self.repo.clear_partial(commit)
            for spec, csum in self._refs.values():
                self.repo.refs.set(spec, csum, fsync=self.repo.fsync)
        finally:
            self._done = True
            self._remove_staging()

    def abort(self) -> None:
        """Drop everything staged; refs are left untouched."""
        if self._done:
            return
        self._done = True
        self._remove_staging()

    def _remove_staging(self) -> None:
        try:
            os.rmdir(self.staging)  # empty after a commit: the common case
        except OSError:
            _fs.rmtree(self.staging)
