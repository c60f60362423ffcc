"""The object store interface: what every store offers, on disk or in memory.

Layer: repo. Two protocols, so that code (and one contract test suite,
``tests/unit/repo/test_store_contract.py``) can be written against the interface rather than
against a directory layout:

* :class:`ObjectStore`, the read side: presence, listing, reading, verifying, deleting;
* :class:`ObjectWriter`, the write side, one batch of writes that lands together or not at all.
  It accepts only verified values or verifies itself while streaming: no write takes a
  "trusted" flag. :class:`~bootree.repo.transaction.Transaction` implements it for the disk
  store (:class:`~bootree.repo.objectstore.DiskObjectStore`, every mode),
  :class:`~bootree.repo.memstore.MemoryTransaction` for
  :class:`~bootree.repo.memstore.MemoryObjectStore`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO, Protocol

from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming
from bootree.format.objects import FileHeader
from bootree.format.verified import VerifiedContent, VerifiedMetadata
from bootree.repo.objectstore import ContentObject

__all__ = ["ObjectStore", "ObjectWriter", "StreamingWriter"]


class ObjectStore(Protocol):
    """The read side of a store of ostree objects."""

    def has(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object is present (and not obviously truncated)."""
        ...

    def iter_objects(self) -> Iterable[tuple[ObjectType, Checksum]]:
        """Every object (order unspecified)."""
        ...

    def load_metadata(self, otype: ObjectType, csum: Checksum) -> bytes:
        """A metadata object's bytes; raises ObjectMissing."""
        ...

    def open_file(self, csum: Checksum) -> ContentObject:
        """A content object's header and stream; raises ObjectMissing, CorruptObject."""
        ...

    def load_file(self, csum: Checksum) -> tuple[FileHeader, bytes]:
        """A content object's header and whole content."""
        ...

    def content_size(self, csum: Checksum) -> int:
        """A content object's uncompressed size."""
        ...

    def verify_file(self, csum: Checksum) -> None:
        """Re-hash a content object; raises CorruptObject if it is not what its name says."""
        ...

    def delete(self, otype: ObjectType, csum: Checksum) -> None:
        """Remove an object if present."""
        ...


class StreamingWriter(Protocol):
    """One object written chunk by chunk, staged only by :meth:`finish` once verified."""

    def write(self, chunk: bytes) -> None:
        """Append bytes."""
        ...

    def finish(self) -> Checksum:
        """Verify and stage; raises ChecksumMismatch, CorruptObject, RepoError, OSError."""
        ...

    def abort(self) -> None:
        """Discard what was written."""
        ...

    def __enter__(self) -> StreamingWriter: ...

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...


class ObjectWriter(Protocol):
    """A batch of verified writes into a store (a transaction, without its refs)."""

    def has_object(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object is in the store or already written by this batch."""
        ...

    def write_metadata(self, obj: VerifiedMetadata) -> Checksum:
        """Write a verified metadata object."""
        ...

    def write_content(self, obj: VerifiedContent) -> Checksum:
        """Write a verified content object."""
        ...

    def content_writer(self, header: FileHeader, size: int, expected: Checksum | None = None) -> StreamingWriter:
        """Stream a content object with a known header, hashed as it is written."""
        ...

    def stream_content(self, framing: ContentFraming, expected: Checksum) -> StreamingWriter:
        """Stream a received content object, decoded and verified as it is written."""
        ...

    def write_file(
        self, header: FileHeader, content: bytes | BinaryIO | None = None, expected: Checksum | None = None
    ) -> Checksum:
        """Hash and write a content object given whole."""
        ...

    def checkpoint(self) -> None:
        """Make the completed writes visible now (a pull keeping what arrived)."""
        ...

    def commit(self) -> None:
        """Make every write visible."""
        ...

    def abort(self) -> None:
        """Drop every write not yet visible."""
        ...
