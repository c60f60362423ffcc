"""Streaming object writers of a transaction: hash while writing, stage only when verified.

Layer: repo. A :class:`ContentWriter` takes the content of a file whose header is known (a
commit reading its source); a :class:`ReceivedContentWriter` takes an object as it arrives from
another repository (``.filez`` or a checksum stream), decodes it and writes it in this
repository's mode. Both write chunk by chunk to the object's staging file, so memory stays
bounded whatever the object's size, and both stage the object only from ``finish()``, once its
checksum is proven: an abort, an exception, a short source or a wrong checksum removes the file
and the claim, so nothing a failed write touched can be published.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from bootree.errors import ChecksumMismatch, CorruptObject, FormatError, RepoError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.content import ContentFraming, ContentStreamDecoder
from bootree.format.objects import FileHeader
from bootree.repo.contentio import DECOMPRESSOBJ, INFLATE_ERRORS, ContentSink
from bootree.repo.modes import RepoMode
from bootree.repo.objectstore import DiskObjectStore

__all__ = ["ContentWriter", "ReceivedContentWriter", "Slot"]


@dataclass(frozen=True, slots=True)
class Slot:
    """The transaction's claim operations, as the writers need them (see Transaction._claim)."""

    claim: Callable[[ObjectType, Checksum], str | None]
    complete: Callable[[ObjectType, Checksum], None]
    release: Callable[[ObjectType, Checksum], None]
    tmp_path: Callable[[], str]
    stage_tmp: Callable[[str, ObjectType, Checksum], None]


class _Writer:
    """Common life cycle: claimed → written → finished (staged) or aborted (removed)."""

    def __init__(self, slot: Slot) -> None:
        self._slot = slot
        self._sink: ContentSink | None = None
        self._claimed: Checksum | None = None
        self._done = False

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._done:
            self.abort()

    def abort(self) -> None:
        """Discard whatever was written; the object is not staged."""
        if self._done:
            return
        self._done = True
        if self._sink is not None:
            self._sink.abort()
        if self._claimed is not None:
            self._slot.release(ObjectType.FILE, self._claimed)
            self._claimed = None

    def _check_open(self) -> None:
        if self._done:
            raise RepoError("object writer already finished")


class ContentWriter(_Writer):
    """One content object with a known header, hashed while written (``Transaction.content_writer``)."""

    def __init__(
        self, store: DiskObjectStore, slot: Slot, header: FileHeader, size: int, expected: Checksum | None
    ) -> None:
        super().__init__(slot)
        self.header = header
        self.size = size
        self.expected = expected
        self._hasher = hashlib.sha256(header.checksum_prefix())
        self._total = 0
        self._tmp: str | None = None
        if expected is not None:
            target = slot.claim(ObjectType.FILE, expected)
            if target is None:
                return  # claimed by another write: only verify what comes
            self._claimed = expected
        else:
            target = self._tmp = slot.tmp_path()
        try:
            self._sink = store.content_sink(target, header, size)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> ContentWriter:
        return self

    def write(self, chunk: bytes | memoryview) -> None:
        """Append content bytes (aborts the writer if the write fails); a view is not copied."""
        self._check_open()
        try:
            self._hasher.update(chunk)
            self._total += len(chunk)
            if self._sink is not None:
                self._sink.write(chunk)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> Checksum:
        """Complete, verify and stage the object; its checksum.

        Raises:
            ChecksumMismatch: if ``expected`` was given and the content hashes differently.
            RepoError: if the content did not add up to ``size``.
            OSError: for a failed write.
        """
        self._check_open()
        try:
            if self._total != self.size:
                raise RepoError(f"content source changed while reading: expected {self.size} bytes, got {self._total}")
            csum = Checksum(self._hasher.hexdigest())
            if self.expected is not None and csum != self.expected:
                raise ChecksumMismatch(self.expected, csum, "file")
            if self._sink is not None:
                self._sink.finish()
        except BaseException:
            self.abort()
            raise
        self._done = True
        if self._tmp is not None:
            self._slot.stage_tmp(self._tmp, ObjectType.FILE, csum)
        elif self._claimed is not None:
            self._slot.complete(ObjectType.FILE, csum)
        return csum


class ReceivedContentWriter(_Writer):
    """One received content object, decoded, hashed and written (``Transaction.stream_content``)."""

    def __init__(self, store: DiskObjectStore, slot: Slot, framing: ContentFraming, expected: Checksum) -> None:
        super().__init__(slot)
        self._store = store
        self.expected = expected
        self._decoder = ContentStreamDecoder(framing, DECOMPRESSOBJ, INFLATE_ERRORS)
        self._hasher: hashlib._Hash | None = None
        self._target = slot.claim(ObjectType.FILE, expected)
        if self._target is not None:
            self._claimed = expected
        #: Received bytes as they are: an archive repository stores a .filez unchanged.
        self._raw = framing is ContentFraming.ARCHIVED and store.mode is RepoMode.ARCHIVE
        #: A checksum stream into an archive repository: the size (in the .filez header) is
        #: known only at the end, so the content is held until then.
        self._held: list[bytes] | None = None
        #: Raw bytes received before the header was complete (the raw sink opens with it).
        self._early_raw: list[bytes] = []

    def __enter__(self) -> ReceivedContentWriter:
        return self

    @property
    def header(self) -> FileHeader | None:
        """The object's header, once its framing has been received."""
        return self._decoder.header

    def _open(self, header: FileHeader) -> None:
        self._hasher = hashlib.sha256(header.checksum_prefix())
        if self._target is None:
            return
        if self._raw:
            self._sink = self._store.content_sink(self._target, header, 0, raw=True)
        elif self._decoder.size is None and self._store.mode is RepoMode.ARCHIVE:
            self._held = []
        else:
            self._sink = self._store.content_sink(self._target, header, self._decoder.size)

    def _content(self, chunks: list[bytes]) -> None:
        assert self._hasher is not None
        for c in chunks:
            self._hasher.update(c)
            if self._held is not None:
                self._held.append(c)
            elif self._sink is not None and not self._raw:
                self._sink.write(c)

    def write(self, chunk: bytes | memoryview) -> None:
        """Append received bytes (aborts the writer if they are malformed or the write fails).

        Raises:
            CorruptObject: for malformed framing or a body that does not inflate.
        """
        self._check_open()
        try:
            had_header = self._decoder.header is not None
            content = self._decoder.feed(chunk)
            if not had_header:
                if self._decoder.header is None:
                    if self._raw:
                        self._early_raw.append(bytes(chunk))
                    return
                self._open(self._decoder.header)
                if self._raw and self._sink is not None:
                    for early in self._early_raw:
                        self._sink.write(early)
                self._early_raw = []
            if self._raw and self._sink is not None:
                self._sink.write(chunk)
            if content:
                self._content(content)
        except FormatError as e:
            self.abort()
            raise CorruptObject(self.expected, "file", str(e)) from e
        except BaseException:
            self.abort()
            raise

    def finish(self) -> Checksum:
        """Check the object is complete and hashes to ``expected``, then stage it.

        Raises:
            CorruptObject: if it is truncated or malformed.
            ChecksumMismatch: if it hashes to something else.
            OSError: for a failed write.
        """
        self._check_open()
        try:
            try:
                self._content(self._decoder.finish())
            except FormatError as e:
                raise CorruptObject(self.expected, "file", str(e)) from e
            assert self._hasher is not None and self._decoder.header is not None
            actual = Checksum(self._hasher.hexdigest())
            if actual != self.expected:
                raise ChecksumMismatch(self.expected, actual, "file")
            if self._held is not None and self._target is not None:
                size = sum(len(c) for c in self._held)
                self._sink = self._store.content_sink(self._target, self._decoder.header, size)
                for c in self._held:
                    self._sink.write(c)
            if self._sink is not None:
                self._sink.finish()
        except BaseException:
            self.abort()
            raise
        self._done = True
        if self._claimed is not None:
            self._slot.complete(ObjectType.FILE, actual)
        return actual


def hash_received_file(path: str, framing: ContentFraming, expected: Checksum, chunk: int = 1 << 20) -> None:
    """Prove that the file at ``path``, a content object in ``framing``, hashes to ``expected``.

    Streams it (bounded memory), writing nothing: for an object adopted by hardlink, whose
    bytes are already where they belong.

    Raises:
        CorruptObject: it does not parse or inflate.
        ChecksumMismatch: it hashes to something else.
        OSError: it cannot be read.
    """
    decoder = ContentStreamDecoder(framing, DECOMPRESSOBJ, INFLATE_ERRORS)
    hasher: hashlib._Hash | None = None
    try:
        with open(path, "rb") as f:
            while True:
                data = f.read(chunk)
                out = decoder.feed(data) if data else decoder.finish()
                if hasher is None and decoder.header is not None:
                    hasher = hashlib.sha256(decoder.header.checksum_prefix())
                if hasher is not None:
                    for c in out:
                        hasher.update(c)
                if not data:
                    break
    except FormatError as e:
        raise CorruptObject(expected, "file", str(e)) from e
    assert hasher is not None  # finish() raised for an object without a complete header
    actual = Checksum(hasher.hexdigest())
    if actual != expected:
        raise ChecksumMismatch(expected, actual, "file")
