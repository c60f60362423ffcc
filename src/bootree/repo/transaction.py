"""Transactions: stage verified objects in ``tmp/``, then publish them and move refs in one step.

Layer: repo. Every write to a repository goes through a :class:`Transaction`:

1. objects are written to a locked ``tmp/staging-<boot id>-<random>/`` (never directly under
   ``objects/``). The transaction accepts only verified values
   (:class:`~bootree.format.verified.VerifiedMetadata`,
   :class:`~bootree.format.verified.VerifiedContent`) or verifies itself while writing
   (:meth:`Transaction.content_writer`, :meth:`Transaction.stream_content`): no caller can
   declare bytes "trusted";
2. an object counts as staged only once its file is completely written and verified; a write
   that fails (a full disk, a wrong checksum, a short source) removes its file and its claim, so
   neither a checkpoint, an early publish nor the commit can make it visible;
3. :meth:`Transaction.commit` flushes the filesystem (one ``syncfs``), renames every staged
   object into ``objects/`` (an object is either absent or complete), flushes again, and only
   then writes detached metadata, clears ``commitpartial`` markers and moves refs;
4. :meth:`Transaction.abort` (or an exception in the ``with`` block) deletes the staging
   directory: the repository is exactly as before.

A crash at any point leaves at worst a stale staging directory, which the next transaction of
bootree or ostree removes (see :mod:`bootree.repo.staging`). Writers may call the ``write_*``
methods from several threads.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from bootree import _fs
from bootree.errors import RepoError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader
from bootree.format.refspec import RefSpec, parse_refspec
from bootree.format.verified import VerifiedContent, VerifiedMetadata
from bootree.repo import testhooks
from bootree.repo.modes import RepoMode
from bootree.repo.objectstore import CHUNK, DiskObjectStore, ObjectIndex
from bootree.repo.partial import PartialMarkers
from bootree.repo.refs import RefStore
from bootree.repo.staging import Staging, clean_stale
from bootree.repo.writers import ContentWriter, ReceivedContentWriter, Slot, hash_received_file

__all__ = ["ContentWriter", "ReceivedContentWriter", "Transaction"]

log = logging.getLogger(__name__)

#: Publishing order (see Transaction._publish_objects): content first, commits last.
_PUBLISH_ORDER = {ObjectType.FILE: 0, ObjectType.DIR_META: 1, ObjectType.DIR_TREE: 2, ObjectType.COMMIT: 3}


def _flat(rel: str) -> str:
    """The staged name of the object at ``rel``: ``ab/cdef….file`` is staged as ``abcdef….file``.

    One flat staging directory instead of ostree's 256 prefix directories: nothing to create
    per prefix while writing, and an empty directory to remove after publishing.
    """
    return rel[:2] + rel[3:]


class Transaction:
    """A set of object writes and ref updates that land together or not at all.

    Made by :meth:`bootree.repo.Repo.transaction`; it needs only the object store, the refs and
    the partial markers, not the repository object.
    """

    def __init__(
        self,
        store: DiskObjectStore,
        refs: RefStore,
        partial: PartialMarkers,
        *,
        tmp: Path,
        fsync: bool = True,
        fs_verity: str = "no",
    ) -> None:
        self._store = store
        #: "no", "maybe" or "yes": fs-verity on content objects (Repo.fs_verity, ostree's [ex-fsverity]).
        self.fs_verity = fs_verity
        self._refs_store = refs
        self._partial = partial
        self.fsync = fsync
        clean_stale(tmp)
        self._staging = Staging(tmp)
        self.staging = self._staging.path
        self._staging_str = os.fspath(self.staging)
        store.prepare_writes()
        #: rel -> complete? An entry is claimed (False) while its file is being written.
        self._staged: dict[str, bool] = {}
        self._types: dict[str, ObjectType] = {}
        self._lock = threading.Lock()
        #: Held while objects are flushed and renamed into objects/ (early, checkpoint, commit).
        self._publish_lock = threading.Lock()
        self._made_prefixes: set[str] = set()
        self._renamed_unsynced = False
        self._verity_unsupported = False
        self._counter = itertools.count()
        self._refs: dict[str, tuple[RefSpec, Checksum | None]] = {}
        self._commitmeta: dict[Checksum, bytes] = {}
        self._partial_clear: set[Checksum] = set()
        self._done = False
        self._index: ObjectIndex | None = None
        #: Objects written by this transaction (not counting ones already present).
        self.objects_written = 0

    @property
    def mode(self) -> RepoMode:
        """The repository's mode (what the objects are written as)."""
        return self._store.mode

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
        """Whether the object is in the repository or claimed by this transaction."""
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

    # --- claims: the only way an object gets into the staging directory ----------------------

    def _claim(self, otype: ObjectType, csum: Checksum) -> str | None:
        """Claim the staged path of an object about to be written; ``None`` if already claimed.

        The claim is incomplete until :meth:`_complete`; publishing skips incomplete claims.
        """
        rel = self._store.relpath(otype, csum)
        with self._lock:
            if rel in self._staged:
                return None
            self._staged[rel] = False
            self._types[rel] = otype
        self.objects_written += 1
        return f"{self._staging_str}/{_flat(rel)}"

    def _complete(self, otype: ObjectType, csum: Checksum) -> None:
        rel = self._store.relpath(otype, csum)
        with self._lock:
            self._staged[rel] = True

    def _release(self, otype: ObjectType, csum: Checksum) -> None:
        """Drop a claim whose write failed, and its file (whatever state it is in)."""
        rel = self._store.relpath(otype, csum)
        with self._lock:
            self._staged.pop(rel, None)
            self._types.pop(rel, None)
        self.objects_written -= 1
        try:
            os.unlink(f"{self._staging_str}/{_flat(rel)}")
        except FileNotFoundError:
            pass

    def _slot(self) -> Slot:
        return Slot(self._claim, self._complete, self._release, self._tmp_path, self._stage_tmp)

    def _tmp_path(self) -> str:
        return f"{self._staging_str}/tmp-{next(self._counter)}"

    def _stage_tmp(self, tmp: str, otype: ObjectType, csum: Checksum) -> None:
        """Move a completely written and verified temporary file to its staged name."""
        target = self._claim(otype, csum)
        if target is None:
            os.unlink(tmp)
            return
        try:
            _fs.rename(tmp, target)
        except BaseException:
            self._release(otype, csum)
            raise
        self._complete(otype, csum)

    # --- object writes -----------------------------------------------------------------------

    def write_metadata(self, obj: VerifiedMetadata) -> Checksum:
        """Write a verified commit, dirtree or dirmeta object (nothing if already present).

        Raises:
            OSError: if the write fails (the object is then not staged).
        """
        csum = obj.checksum
        if self.has_object(obj.otype, csum):
            return csum
        target = self._claim(obj.otype, csum)
        if target is None:
            return csum
        try:
            self._store.metadata_file(target, obj.data)
        except BaseException:
            self._release(obj.otype, csum)
            raise
        self._complete(obj.otype, csum)
        return csum

    def write_commit(self, commit: Commit) -> Checksum:
        """Serialize and write a commit object (hashed once)."""
        return self.write_metadata(VerifiedMetadata.of(commit))

    def write_dirtree(self, tree: DirTree) -> Checksum:
        """Serialize and write a dirtree object (hashed once)."""
        return self.write_metadata(VerifiedMetadata.of(tree))

    def write_dirmeta(self, meta: DirMeta) -> Checksum:
        """Serialize and write a dirmeta object (hashed once)."""
        return self.write_metadata(VerifiedMetadata.of(meta))

    def write_content(self, obj: VerifiedContent) -> Checksum:
        """Write a verified content object held in memory, without hashing it again.

        An archive repository stores ``obj.archived`` as it is when set. The object is not
        looked up first (callers asked already); one claimed by another thread is skipped.

        Raises:
            OSError: if the write fails (the object is then not staged).
        """
        csum = obj.checksum
        target = self._claim(ObjectType.FILE, csum)
        if target is None:
            return csum
        try:
            if obj.archived is not None and self._store.mode is RepoMode.ARCHIVE:
                sink = self._store.content_sink(target, obj.header, obj.size, raw=True)
                data = obj.archived
            else:
                sink = self._store.content_sink(target, obj.header, obj.size)
                data = obj.content
            try:
                sink.write(data)
                sink.finish()
            except BaseException:
                sink.abort()
                raise
        except BaseException:
            self._release(ObjectType.FILE, csum)
            raise
        self._complete(ObjectType.FILE, csum)
        return csum

    def adopt_file(self, path: str, csum: Checksum) -> bool:
        """Stage the file at ``path`` itself as content object ``csum`` (``commit --consume``).

        For bare and bare-user-only repositories, where an object is the file with its own
        metadata: the caller hashed it (``csum``) and gives it up, so it is renamed into the
        staging directory instead of being copied, as ostree adopts consumed files. Returns
        False, leaving the file alone, when it cannot be renamed there (another file system).

        Raises:
            RepoError: for a repository mode whose objects are not plain files.
            OSError: if the rename fails for another reason.
        """
        if self._store.mode not in (RepoMode.BARE, RepoMode.BARE_USER_ONLY):
            raise RepoError(f"{self._store.mode.value} repositories cannot adopt files")
        target = self._claim(ObjectType.FILE, csum)
        if target is None:
            return True
        try:
            _fs.rename(path, target)
        except OSError as e:
            self._release(ObjectType.FILE, csum)
            if e.errno == errno.EXDEV:
                return False
            raise
        self._complete(ObjectType.FILE, csum)
        return True

    def content_writer(self, header: FileHeader, size: int, expected: Checksum | None = None) -> ContentWriter:
        """A writer for one content object of ``size`` bytes, hashed while it is written.

        Use as ``with txn.content_writer(h, n, csum) as w: w.write(chunk)...; csum = w.finish()``.
        The object is staged only by :meth:`ContentWriter.finish`, and only if the bytes
        hash to ``expected`` (when given) and add up to ``size``; leaving the ``with`` block
        without finishing, or with an exception, discards everything written.
        """
        return ContentWriter(self._store, self._slot(), header, size, expected)

    def stream_content(self, framing: ContentFraming, expected: Checksum) -> ReceivedContentWriter:
        """A writer for one content object received in ``framing`` (a pull), verified as it goes.

        Received bytes go in with :meth:`ReceivedContentWriter.write` in any chunking; they are
        decoded, hashed and written to the staging file in this repository's mode (an archive
        repository keeps a received ``.filez`` as it is), so an object of any size is never
        held in memory. :meth:`ReceivedContentWriter.finish` stages it only if it hashes to
        ``expected``; otherwise, or on abort, its file is removed.
        """
        return ReceivedContentWriter(self._store, self._slot(), framing, expected)

    def write_file(
        self, header: FileHeader, content: bytes | BinaryIO | None = None, expected: Checksum | None = None
    ) -> Checksum:
        """Write a content object from bytes or a binary stream (``None`` for a symlink).

        Objects already present are not rewritten.

        Raises:
            ChecksumMismatch: if ``expected`` is given and differs.
        """
        if content is None or isinstance(content, (bytes, bytearray, memoryview)):
            obj = VerifiedContent.of(header, bytes(content or b""), expected)
            if self.has_object(ObjectType.FILE, obj.checksum):
                return obj.checksum
            return self.write_content(obj)
        # A stream of unknown length: read it whole (callers pass small files).
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
        with self.stream_content(ContentFraming.ARCHIVED, expected) as w:
            w.write(filez)
            return w.finish()

    def link_archived_file(self, source: str, expected: Checksum) -> bool:
        """Adopt another archive repository's ``.filez`` by hardlink, as ``ostree pull-local``
        does between repositories of one mode: no copy, no second inode.

        The link is made into staging first and the linked inode is then verified (streamed)
        against ``expected``, so what is published is what was checked; objects are immutable,
        so sharing the inode with the source is sound. Returns False (nothing staged) when this
        repository is not an archive or the file system refuses the link (another file system,
        the link limit): the caller copies instead.

        Raises:
            ChecksumMismatch, CorruptObject: the source object is corrupt.
            OSError: the source cannot be read.
        """
        if self._store.mode is not RepoMode.ARCHIVE:
            return False
        if self.has_object(ObjectType.FILE, expected):
            return True
        target = self._claim(ObjectType.FILE, expected)
        if target is None:
            return True
        try:
            os.link(source, target)
        except OSError as e:
            self._release(ObjectType.FILE, expected)
            if e.errno in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP):
                return False
            raise
        try:
            hash_received_file(target, ContentFraming.ARCHIVED, expected)
        except BaseException:
            self._release(ObjectType.FILE, expected)
            raise
        self._complete(ObjectType.FILE, expected)
        return True

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
        self._partial.mark(commit)

    def clear_partial(self, commit: Checksum) -> None:
        """Remove the partial marker of ``commit`` once this transaction's objects are published."""
        self._partial_clear.add(commit)

    # --- publishing ----------------------------------------------------------------------------

    def _completed(self, rels: Iterable[str] | None = None) -> list[str]:
        """The staged objects that are completely written (of ``rels``, or all)."""
        with self._lock:
            if rels is None:
                return [r for r, done in self._staged.items() if done]
            return [r for r in rels if self._staged.get(r)]

    def _publish_objects(self) -> None:
        with self._publish_lock:
            # Content first, commits last: a crash part-way leaves only objects nothing refers
            # to, never a commit whose tree is incomplete.
            batch = sorted(self._completed(), key=lambda r: (_PUBLISH_ORDER.get(self._types[r], 9), r))
            t0 = time.perf_counter()
            if batch and self.fsync:
                _fs.syncfs(self.staging)
            t1 = time.perf_counter()
            self._enable_verity(batch)
            self._rename_in(batch)
            t2 = time.perf_counter()
            if (batch or self._renamed_unsynced) and self.fsync:
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

    def _enable_verity(self, rels: list[str]) -> None:
        """fs-verity on staged content objects, per the repository's ``fs_verity`` (ostree's
        ``[ex-fsverity]``): ``yes`` fails when the file system cannot, ``maybe`` stops trying."""
        wanted = self.fs_verity
        if wanted == "no" or not self._store.mode.is_bare or self._verity_unsupported:
            return
        for rel in rels:
            if not rel.endswith(".file"):
                continue
            path = f"{self._staging_str}/{_flat(rel)}"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as e:
                if e.errno == errno.ELOOP:  # a bare symlink object: verity is for file data
                    continue
                raise
            try:
                ok = _fs.fsverity_enable(fd)
            finally:
                os.close(fd)
            if not ok:
                if wanted == "yes":
                    raise RepoError(
                        f"{self._store.root}: fs-verity is required ([ex-fsverity] required=true) but this file system has none"
                    )
                self._verity_unsupported = True
                return

    def _rename_in(self, rels: list[str]) -> None:
        objects = self._store.objects
        staging, objects_str = self._staging_str, os.fspath(objects)
        for rel in rels:
            prefix = rel[:2]
            if prefix not in self._made_prefixes:
                (objects / prefix).mkdir(mode=0o755, exist_ok=True)
                self._made_prefixes.add(prefix)
            _fs.rename(f"{staging}/{_flat(rel)}", f"{objects_str}/{rel}")
            if rel.endswith(".commit"):
                # A commit deleted before (prune) and written again: its tombstone goes, as ostree's.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{objects_str}/{rel.removesuffix('commit')}tombstone-commit")
            if self._index is not None:
                self._index.add(rel)
            with self._lock:
                self._staged.pop(rel, None)
                self._types.pop(rel, None)

    def publish_early(self, otype: ObjectType, checksums: Iterable[Checksum]) -> None:
        """Publish content or dirmeta objects that are completely written, before the commit.

        For pulls: every staged object is verified, nothing can refer to a content or dirmeta
        object before its dirtree is published (dirtrees and commits wait for :meth:`commit`),
        and the data is flushed (``syncfs``) before the renames. Publishing in the background
        while the rest downloads leaves little for the final flush and renames. An object still
        being written, or whose write failed, is skipped: only completed claims are published.
        """
        if otype not in (ObjectType.FILE, ObjectType.DIR_META):
            raise RepoError(f"{otype.value} objects are published only by commit()")
        rels = [self._store.relpath(otype, c) for c in checksums]
        with self._publish_lock:
            batch = self._completed(rels)
            if not batch:
                return
            if self.fsync:
                _fs.syncfs(self.staging)
            self._rename_in(batch)
            self._renamed_unsynced = True

    def checkpoint(self) -> None:
        """Publish the objects completely written so far, without touching refs.

        Used by pulls so that an interrupted transfer keeps what arrived. Objects whose write
        is still under way or failed are not published (see the module docstring, rule 2).
        """
        self._publish_objects()

    def commit(self) -> None:
        """Publish staged objects, then detached metadata, partial markers and refs.

        Raises:
            RepoError: if an object write is still under way (a caller bug: nothing is
                published then, and the transaction is aborted).
            RefConflict: never for plain set_ref; reserved for compare-and-swap callers.
        """
        if self._done:
            raise RepoError("transaction already finished")
        if testhooks.armed("pre-commit"):
            self._done = True
            self._staging.abandon()  # as a crash just before the commit point leaves it
            testhooks.check("pre-commit")
        try:
            with self._lock:
                unfinished = [r for r, done in self._staged.items() if not done]
            if unfinished:
                raise RepoError(f"transaction committed while {len(unfinished)} object writes are unfinished")
            self._publish_objects()
            for commit, data in self._commitmeta.items():
                path = self._store.path(ObjectType.COMMIT_META, commit)
                _fs.makedirs(path.parent)
                _fs.write_atomic(path, data, fsync=self.fsync)
            for commit in self._partial_clear:
                self._partial.clear(commit)
            for spec, csum in self._refs.values():
                self._refs_store.set(spec, csum, fsync=self.fsync)
        finally:
            self._done = True
            self._staging.remove()

    def abort(self) -> None:
        """Drop everything staged; refs are left untouched."""
        if self._done:
            return
        self._done = True
        self._staging.remove()
