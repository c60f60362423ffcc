"""An in-memory object store: the double that tests (and simulators) use instead of a directory.

Layer: repo. :class:`MemoryObjectStore` implements :class:`~bootree.repo.store.ObjectStore`
and its :meth:`~MemoryObjectStore.begin` returns a :class:`MemoryTransaction` implementing
:class:`~bootree.repo.store.ObjectWriter`, with the same rules as the disk transaction: only
verified values are accepted, streamed objects are verified before they are staged, and nothing
becomes visible before :meth:`MemoryTransaction.checkpoint` or :meth:`MemoryTransaction.commit`.
The contract suite runs the same tests against it and against every disk mode.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable
from typing import BinaryIO, cast

from bootree.errors import ChecksumMismatch, CorruptObject, FormatError, ObjectMissing, RepoError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming, ContentStreamDecoder
from bootree.format.objects import FileHeader
from bootree.format.verified import VerifiedContent, VerifiedMetadata
from bootree.repo.objectstore import CHUNK, ContentObject, DiskObjectStore
from bootree.repo.store import ObjectStore, ObjectWriter
from bootree.repo.transaction import Transaction

__all__ = ["MemoryObjectStore", "MemoryTransaction"]

_Meta = dict[tuple[ObjectType, Checksum], bytes]
_Files = dict[Checksum, tuple[FileHeader, bytes]]


class MemoryObjectStore:
    """Objects held in dictionaries (metadata bytes; content as header and bytes)."""

    def __init__(self) -> None:
        self._meta: _Meta = {}
        self._files: _Files = {}
        self._lock = threading.Lock()

    # --- ObjectStore ---------------------------------------------------------------------------

    def has(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object is present."""
        if otype is ObjectType.FILE:
            return csum in self._files
        return (otype, csum) in self._meta

    def iter_objects(self) -> Iterable[tuple[ObjectType, Checksum]]:
        """Every object (a snapshot)."""
        with self._lock:
            names = list(self._meta) + [(ObjectType.FILE, c) for c in self._files]
        return names

    def load_metadata(self, otype: ObjectType, csum: Checksum) -> bytes:
        """A metadata object's bytes.

        Raises:
            ObjectMissing: if absent.
        """
        try:
            return self._meta[(otype, csum)]
        except KeyError:
            raise ObjectMissing(csum, otype.value) from None

    def _file(self, csum: Checksum) -> tuple[FileHeader, bytes]:
        try:
            return self._files[csum]
        except KeyError:
            raise ObjectMissing(csum, "file") from None

    def open_file(self, csum: Checksum) -> ContentObject:
        """A content object's header and a stream over its content (``None`` for symlinks)."""
        header, data = self._file(csum)
        if header.is_symlink:
            return ContentObject(header, None, 0)
        return ContentObject(header, cast(BinaryIO, io.BytesIO(data)), len(data))

    def load_file(self, csum: Checksum) -> tuple[FileHeader, bytes]:
        """A content object's header and content."""
        return self._file(csum)

    def content_size(self, csum: Checksum) -> int:
        """A content object's size."""
        return len(self._file(csum)[1])

    def verify_file(self, csum: Checksum) -> None:
        """Re-hash a content object.

        Raises:
            ObjectMissing, CorruptObject: when absent or the checksum differs.
        """
        header, data = self._file(csum)
        actual = header.checksum(data)
        if actual != csum:
            raise CorruptObject(csum, "file", f"checksum is {actual}")

    def delete(self, otype: ObjectType, csum: Checksum) -> None:
        """Remove an object if present."""
        with self._lock:
            if otype is ObjectType.FILE:
                self._files.pop(csum, None)
            else:
                self._meta.pop((otype, csum), None)

    def begin(self) -> MemoryTransaction:
        """A batch of verified writes (commit or abort it)."""
        return MemoryTransaction(self)

    def _publish(self, meta: _Meta, files: _Files) -> None:
        with self._lock:
            self._meta.update(meta)
            self._files.update(files)


class _MemoryContentWriter:
    """Content streamed into a :class:`MemoryTransaction` (header known, or received framing)."""

    def __init__(
        self,
        txn: MemoryTransaction,
        expected: Checksum | None,
        header: FileHeader | None = None,
        size: int | None = None,
        framing: ContentFraming | None = None,
    ) -> None:
        self._txn = txn
        self._expected = expected
        self._header = header
        self._size = size
        self._decoder = ContentStreamDecoder(framing) if framing is not None else None
        self._parts: list[bytes] = []
        self._done = False

    def __enter__(self) -> _MemoryContentWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._done:
            self.abort()

    def write(self, chunk: bytes) -> None:
        """Append bytes (content, or received framed bytes)."""
        if self._done:
            raise RepoError("object writer already finished")
        if self._decoder is None:
            self._parts.append(bytes(chunk))
            return
        try:
            self._parts += self._decoder.feed(chunk)
        except FormatError as e:
            self.abort()
            raise CorruptObject(self._expected or "", "file", str(e)) from e

    def finish(self) -> Checksum:
        """Verify and stage the object."""
        if self._done:
            raise RepoError("object writer already finished")
        self._done = True
        header = self._header
        if self._decoder is not None:
            try:
                self._parts += self._decoder.finish()
            except FormatError as e:
                raise CorruptObject(self._expected or "", "file", str(e)) from e
            header = self._decoder.header
        assert header is not None
        data = b"".join(self._parts)
        if self._size is not None and len(data) != self._size:
            raise RepoError(f"content source changed while reading: expected {self._size} bytes, got {len(data)}")
        hasher = hashlib.sha256(header.checksum_prefix())
        hasher.update(data)
        actual = Checksum(hasher.hexdigest())
        if self._expected is not None and actual != self._expected:
            raise ChecksumMismatch(self._expected, actual, "file")
        return self._txn.write_content(VerifiedContent.of(header, data, actual))

    def abort(self) -> None:
        """Discard what was written."""
        self._done = True
        self._parts = []


class MemoryTransaction:
    """A batch of verified writes into a :class:`MemoryObjectStore`."""

    def __init__(self, store: MemoryObjectStore) -> None:
        self._store = store
        self._meta: _Meta = {}
        self._files: _Files = {}
        self._lock = threading.Lock()
        self._done = False

    def __enter__(self) -> MemoryTransaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def has_object(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object is in the store or written by this batch."""
        staged = csum in self._files if otype is ObjectType.FILE else (otype, csum) in self._meta
        return staged or self._store.has(otype, csum)

    def write_metadata(self, obj: VerifiedMetadata) -> Checksum:
        """Stage a verified metadata object."""
        with self._lock:
            self._meta[(obj.otype, obj.checksum)] = obj.data
        return obj.checksum

    def write_content(self, obj: VerifiedContent) -> Checksum:
        """Stage a verified content object."""
        with self._lock:
            self._files[obj.checksum] = (obj.header, obj.content)
        return obj.checksum

    def content_writer(
        self, header: FileHeader, size: int, expected: Checksum | None = None
    ) -> _MemoryContentWriter:
        """Stream a content object with a known header."""
        return _MemoryContentWriter(self, expected, header=header, size=size)

    def stream_content(self, framing: ContentFraming, expected: Checksum) -> _MemoryContentWriter:
        """Stream a received content object."""
        return _MemoryContentWriter(self, expected, framing=framing)

    def write_file(
        self, header: FileHeader, content: bytes | BinaryIO | None = None, expected: Checksum | None = None
    ) -> Checksum:
        """Hash and stage a content object given whole."""
        if content is not None and not isinstance(content, (bytes, bytearray, memoryview)):
            stream = content
            content = b"".join(iter(lambda: stream.read(CHUNK), b""))
        return self.write_content(VerifiedContent.of(header, bytes(content or b""), expected))

    def checkpoint(self) -> None:
        """Publish what is staged so far."""
        with self._lock:
            meta, files = self._meta, self._files
            self._meta, self._files = {}, {}
        self._store._publish(meta, files)

    def commit(self) -> None:
        """Publish everything staged."""
        if self._done:
            raise RepoError("transaction already finished")
        self._done = True
        self.checkpoint()

    def abort(self) -> None:
        """Drop everything staged."""
        self._done = True
        with self._lock:
            self._meta, self._files = {}, {}


def _interfaces(
    disk: DiskObjectStore, memory: MemoryObjectStore, txn: Transaction, mtxn: MemoryTransaction
) -> tuple[list[ObjectStore], list[ObjectWriter]]:
    """Never called: mypy checks here that both stores and both writers implement the protocols."""
    return [disk, memory], [txn, mtxn]
