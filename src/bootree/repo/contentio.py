"""One content object file in each repository mode: an inflating reader and a push writer.

Layer: repo. :class:`ContentSink` writes the bytes of one object at a temporary path, chunk by
chunk, so that an object of any size is streamed to its file and never held whole (a pull hands
over what the network delivers; a commit what it reads from the source). It neither hashes nor
publishes: the transaction (``repo/transaction.py``) hashes around it and decides whether the
file becomes an object. Any failure leaves the caller to :meth:`ContentSink.abort`, which
removes the file.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterable
from typing import BinaryIO, cast

from bootree import _fs
from bootree.errors import RepoError
from bootree.format.content import (
    BARE_USER_XATTR,
    Compressor,
    CompressorFactory,
    DecompressorFactory,
    bare_user_disk_mode,
    encode_archive_header,
    encode_bare_user_meta,
    inflate_chunks,
)
from bootree.format.objects import FileHeader
from bootree.repo.modes import RepoMode

__all__ = ["CHUNK", "DECOMPRESSOBJ", "FAST_COMPRESSOBJ", "INFLATE_ERRORS", "ContentSink", "InflatingReader"]

try:  # zlib-ng compresses 2-3x faster than zlib for ~3% larger output; both inflate the same.
    from zlib_ng import zlib_ng as _zlib_ng

    FAST_COMPRESSOBJ: CompressorFactory | None = cast(CompressorFactory, _zlib_ng.compressobj)
    DECOMPRESSOBJ: DecompressorFactory = cast(DecompressorFactory, _zlib_ng.decompressobj)
    INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, cast("type[Exception]", _zlib_ng.error))
except ImportError:  # pragma: no cover - zlib-ng is a declared dependency
    FAST_COMPRESSOBJ = None
    DECOMPRESSOBJ = cast(DecompressorFactory, zlib.decompressobj)
    INFLATE_ERRORS = (zlib.error,)

#: Read and hash size for streamed content.
CHUNK = 1 << 20
#: Files from this size on are probed for compressibility (see ContentSink._start_deflate).
_PROBE_MIN_SIZE = 256 << 10
_PROBE_BYTES = 64 << 10
_INCOMPRESSIBLE_RATIO = 0.985
#: Files at least this large have their writeback started as soon as they are written.
_WRITEBACK_MIN = 256 << 10


class InflatingReader(io.RawIOBase):
    """A read-only stream over the body of a ``.filez`` object, inflating as it goes.

    ``read(n)`` hands out slices of the inflated chunks without re-copying what is left (a
    BufferedReader on top would allocate a large buffer per file), and ``read()`` of a small
    object returns its single inflated chunk as it is.
    """

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._chunks = inflate_chunks(iter(lambda: f.read(CHUNK), b""), size, DECOMPRESSOBJ, INFLATE_ERRORS)
        self._buf = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while self._pos >= len(self._buf):
            nxt = next(self._chunks, None)
            if nxt is None:
                return False
            self._buf, self._pos = nxt, 0
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while self._fill():
                parts.append(self._buf[self._pos :] if self._pos else self._buf)
                self._pos = len(self._buf)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if not self._fill():
            return b""
        if self._pos == 0 and size >= len(self._buf):
            self._pos = len(self._buf)
            return self._buf
        out = self._buf[self._pos : self._pos + size]
        self._pos += len(out)
        return out

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def read_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would race other threads)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777  # unknown: always fchmod


class _FileWriter:
    """``path`` created exclusively, written chunk by chunk, then owner, xattrs, mode, mtime.

    A repository write creates thousands of these, so every call not needed is skipped: the file
    is created with its final mode when ``umask`` (the process's, as far as the caller knows)
    keeps it (no ``fchmod``), ``fchown`` is left out when the file already has that owner, and
    all metadata goes through the open descriptor instead of a second path lookup.
    """

    __slots__ = ("direct", "fd", "mode", "owner", "path", "written", "xattrs", "zero_mtime")

    def __init__(
        self,
        path: str,
        mode: int,
        owner: tuple[int, int] | None,
        xattrs: Iterable[tuple[str | bytes, bytes]],
        zero_mtime: bool,
        umask: int,
    ) -> None:
        self.path = path
        self.mode = mode & 0o7777
        self.owner = owner
        self.xattrs = xattrs
        self.zero_mtime = zero_mtime
        # Set-ID bits are cleared by fchown and may be dropped by open itself: set them last.
        self.direct = not (self.mode & umask) and not (self.mode & 0o6000)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self.fd: int | None = os.open(path, flags, self.mode if self.direct else 0o600)
        self.written = 0

    def write(self, chunk: bytes | memoryview) -> None:
        assert self.fd is not None
        view = memoryview(chunk)
        self.written += len(view)
        while view:
            n = _fs.write(self.fd, view)
            view = view[n:]

    def write_parts(self, first: bytes, chunk: bytes | memoryview) -> None:
        """``first`` then ``chunk``, in one system call when the kernel takes them whole."""
        assert self.fd is not None
        n = _fs.writev(self.fd, [first, chunk])
        total = len(first) + len(chunk)
        self.written += n
        if n < total:  # a short write: the rest the usual way
            self.write(memoryview(first + bytes(chunk))[n:])

    def finish(self) -> None:
        fd = self.fd
        assert fd is not None
        try:
            if self.written >= _WRITEBACK_MIN:
                _fs.start_writeback(fd)
            if self.owner is not None:
                os.fchown(fd, *self.owner)
            for name, value in self.xattrs:
                os.setxattr(fd, name, value)
            if not self.direct:
                os.fchmod(fd, self.mode)
            if self.zero_mtime:
                os.utime(fd, ns=(0, 0))
        finally:
            self.fd = None
            os.close(fd)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class ContentSink:
    """Writes one content object in a store's mode at ``path``, chunk by chunk.

    ``size`` is the uncompressed content size (0 for a symlink); :meth:`finish` fails unless
    exactly that many bytes were written. It may be None (unknown) except in archive mode,
    whose header records it. ``raw`` (archive mode only) writes the given bytes as
    they are: a ``.filez`` received from an archive source, which the caller verifies.
    """

    def __init__(
        self,
        path: str,
        header: FileHeader,
        size: int | None,
        mode: RepoMode,
        *,
        creator: tuple[int, int] | None,
        umask: int,
        zlib_level: int,
        compressobj: CompressorFactory,
        raw: bool = False,
    ) -> None:
        self.path = path
        self.header = header
        self.size = size
        self.total = 0
        self._mode = mode
        self._raw = raw
        self._creator = creator
        self._level = zlib_level
        self._compressobj = compressobj
        self._comp: Compressor | None = None
        self._probe: list[bytes | memoryview] = []
        self._probed = 0
        self._file: _FileWriter | None = None
        #: An archive's header, written with the first compressed bytes (one system call).
        self._head = b""
        if size is None and mode is RepoMode.ARCHIVE and not raw:
            raise RepoError("an archived content object needs its size up front")
        self._symlink = header.is_symlink and mode in (RepoMode.BARE, RepoMode.BARE_USER_ONLY) and not raw
        if self._symlink:
            return  # created by finish(): os.symlink
        if raw or mode is RepoMode.ARCHIVE:
            self._file = _FileWriter(path, 0o644, None, (), False, umask)
            if not raw:
                self._head = encode_archive_header(header, size or 0)
        elif mode is RepoMode.BARE_USER:
            meta = [(BARE_USER_XATTR, encode_bare_user_meta(header))]
            self._file = _FileWriter(path, bare_user_disk_mode(header.mode), None, meta, True, umask)
            if header.is_symlink:
                self._file.write(header.symlink_target.encode("utf-8", "surrogateescape") + b"\0")
        elif mode is RepoMode.BARE_USER_ONLY:
            self._file = _FileWriter(path, header.mode, None, (), True, umask)
        else:  # bare
            owner = (header.uid, header.gid)
            self._file = _FileWriter(
                path, header.mode, None if owner == creator else owner, header.xattrs, True, umask
            )

    def write(self, chunk: bytes | memoryview) -> None:
        """Append content bytes (or, for ``raw``, archived bytes); a view is not copied."""
        if not chunk:
            return
        self.total += len(chunk)
        f = self._file
        if f is None:
            raise RepoError("a symlink object has no content")
        if self._raw or self._mode is not RepoMode.ARCHIVE:
            f.write(chunk)
            return
        if self.header.is_symlink:
            raise RepoError("a symlink object has no content")
        if self._comp is None:
            self._probe.append(chunk)
            self._probed += len(chunk)
            if (self.size or 0) >= _PROBE_MIN_SIZE and self._probed < _PROBE_BYTES:
                return
            self._start_deflate()
            return
        self._deflate(chunk)

    def _deflate(self, chunk: bytes | memoryview) -> None:
        assert self._comp is not None and self._file is not None
        # Compressed a megabyte at a time: the output of one huge compress() call would be
        # held whole beside its input (a commit reads files of up to 8 MiB in one piece).
        view = memoryview(chunk)
        for i in range(0, len(view), CHUNK):
            out = self._comp.compress(view[i : i + CHUNK])
            if out:
                self._emit(out)

    def _emit(self, out: bytes) -> None:
        """Write compressed bytes (after the header, if that is still to be written)."""
        assert self._file is not None
        if self._head:
            head, self._head = self._head, b""
            self._file.write_parts(head, out)
        else:
            self._file.write(out)

    def _start_deflate(self) -> None:
        """Choose the deflate level (0, stored, when the first bytes do not compress) and start.

        Already-compressed content (kernels, gzip'd initramfs, media) gains under 1% from
        deflate yet costs most of an archive commit's CPU; a probe of its first bytes decides.
        """
        assert self._file is not None
        head = b"".join(self._probe) if len(self._probe) > 1 else (self._probe[0] if self._probe else b"")
        self._probe = []
        level = self._level
        if (self.size or 0) >= _PROBE_MIN_SIZE and len(head) >= _PROBE_BYTES:
            comp = self._compressobj(self._level, zlib.DEFLATED, -15)
            probe = len(comp.compress(head[:_PROBE_BYTES])) + len(comp.flush())
            if probe >= _PROBE_BYTES * _INCOMPRESSIBLE_RATIO:
                level = 0
        self._comp = self._compressobj(level, zlib.DEFLATED, -15)
        if head:
            self._deflate(head)

    def finish(self) -> None:
        """Complete the file (size check, metadata, close).

        Raises:
            RepoError: if the content did not add up to ``size``.
            OSError: for a failed write (the caller aborts).
        """
        if not self._raw and self.size is not None and self.total != self.size:
            raise RepoError(f"content source changed while reading: expected {self.size} bytes, got {self.total}")
        if self._symlink:
            self._make_symlink()
            return
        f = self._file
        assert f is not None
        if self._mode is RepoMode.ARCHIVE and not self._raw and not self.header.is_symlink:
            if self._comp is None:
                self._start_deflate()
            assert self._comp is not None
            self._emit(self._comp.flush())
        elif self._head:  # an archived symlink: the header is the whole file
            f.write(self._head)
            self._head = b""
        f.finish()

    def _make_symlink(self) -> None:
        header, path = self.header, self.path
        os.symlink(header.symlink_target, path)
        if self._mode is RepoMode.BARE:
            if (header.uid, header.gid) != self._creator:
                os.lchown(path, header.uid, header.gid)
            for name, value in header.xattrs:
                os.setxattr(path, name, value, follow_symlinks=False)
        os.utime(path, (0, 0), follow_symlinks=False)

    def abort(self) -> None:
        """Close and remove whatever was written (safe to call after a failure in any step)."""
        if self._file is not None:
            self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def write_whole(path: str, data: bytes, umask: int) -> None:
    """Create a metadata object file at ``path`` with exactly ``data`` (mode 0644).

    Raises:
        OSError: for a failed write; the partial file is removed.
    """
    f = _FileWriter(path, 0o644, None, (), False, umask)
    try:
        f.write(data)
        f.finish()
    except BaseException:
        f.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise


def write_chunks(sink: ContentSink, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` into ``sink`` and finish it; on any failure abort it (and re-raise)."""
    try:
        for c in chunks:
            sink.write(c)
        sink.finish()
    except BaseException:
        sink.abort()
        raise

