"""The on-disk object store: where each object lives and how each mode encodes content.

Layer: repo. This module knows the bytes-on-disk of every mode; it does not know about
transactions or refs. Writers here create a *temporary* file (in a staging directory chosen by
the caller) and return; publishing it under its final name is the transaction's job.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import threading
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

from bootree import _fs
from bootree.errors import ChecksumMismatch, CorruptObject, FormatError, ObjectMissing, RepoError
from bootree.format.checksum import Checksum
from bootree.format.content import (
    BARE_USER_XATTR,
    bare_user_disk_mode,
    decode_archive_header,
    decode_bare_user_meta,
    deflate_chunks,
    encode_archive_header,
    encode_bare_user_meta,
    inflate_chunks,
)
from bootree.format.objects import FileHeader, ObjectType
from bootree.repo.modes import RepoMode

__all__ = ["CHUNK", "DiskObjectStore", "object_relpath"]

try:  # zlib-ng compresses 2-3x faster than zlib for ~3% larger output; both inflate the same.
    from zlib_ng import zlib_ng as _zlib_ng

    _FAST_COMPRESSOBJ: Callable[[int, int, int], Any] | None = _zlib_ng.compressobj
    _DECOMPRESSOBJ: Callable[[int], Any] = _zlib_ng.decompressobj
    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, cast("type[Exception]", _zlib_ng.error))
except ImportError:  # pragma: no cover - zlib-ng is a declared dependency
    _FAST_COMPRESSOBJ = None
    _DECOMPRESSOBJ = zlib.decompressobj
    _INFLATE_ERRORS = (zlib.error,)

#: Read and hash size for streamed content.
CHUNK = 1 << 20
#: Files from this size on are probed for compressibility (see DiskObjectStore._level_for).
_PROBE_MIN_SIZE = 256 << 10
_PROBE_BYTES = 64 << 10
_INCOMPRESSIBLE_RATIO = 0.985


def object_relpath(otype: ObjectType, csum: Checksum, mode: RepoMode) -> str:
    """``ab/cdef….ext`` relative to ``objects/`` (content is ``.filez`` in archive mode)."""
    ext = otype.value
    if otype is ObjectType.FILE and mode is RepoMode.ARCHIVE:
        ext = "filez"
    return f"{csum[:2]}/{csum[2:]}.{ext}"


class _InflatingReader(io.RawIOBase):
    """A read-only stream over the body of a ``.filez`` object, inflating as it goes.

    ``read(n)`` hands out slices of the inflated chunks without re-copying what is left (a
    BufferedReader on top would allocate a large buffer per file), and ``read()`` of a small
    object returns its single inflated chunk as it is.
    """

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._chunks = inflate_chunks(iter(lambda: f.read(CHUNK), b""), size, _DECOMPRESSOBJ, _INFLATE_ERRORS)
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


class DiskObjectStore:
    """Objects under ``<repo>/objects`` in one of the four modes."""

    def __init__(self, root: Path, mode: RepoMode, *, zlib_level: int = 6, fast_zlib: bool = True) -> None:
        self.root = root
        self.objects = root / "objects"
        #: ``objects`` as a string, for building paths in hot loops.
        self.objects_str = os.fspath(self.objects)
        self.mode = mode
        self.zlib_level = zlib_level
        self._creator: tuple[int, int] | None = None
        #: 0o777 until prepare_writes() knows better: every write then sets its mode explicitly.
        self._umask = 0o777
        self._compressobj: Callable[[int, int, int], Any] = (
            _FAST_COMPRESSOBJ if fast_zlib and _FAST_COMPRESSOBJ is not None else zlib.compressobj
        )

    def prepare_writes(self) -> None:
        """Learn what a newly created file gets without asking: the umask and the owner.

        Called at the start of every transaction. A file is created with the process's
        effective uid and gid, unless ``tmp/`` is set-group-ID (then its group is the
        directory's, and every write ``fchown``s); its mode is the requested one minus the umask.
        Knowing both lets :func:`_write_file` skip ``fchown`` and ``fchmod`` for most objects.
        """
        try:
            setgid = bool(os.stat(self.root / "tmp").st_mode & stat.S_ISGID)
        except OSError:
            setgid = True
        self._creator = None if setgid else (os.geteuid(), os.getegid())
        self._umask = _read_umask()

    def creator(self) -> tuple[int, int] | None:
        """The owner of a file created under ``tmp/``, or None if not known (see :meth:`prepare_writes`)."""
        return self._creator

    # --- paths and presence ------------------------------------------------------------------

    def relpath(self, otype: ObjectType, csum: Checksum) -> str:
        """The object's path relative to ``objects/``."""
        return object_relpath(otype, csum, self.mode)

    def path(self, otype: ObjectType, csum: Checksum) -> Path:
        """The object's absolute path."""
        return self.objects / self.relpath(otype, csum)

    def path_str(self, otype: ObjectType, csum: Checksum) -> str:
        """The object's absolute path as a string (cheaper than :meth:`path` in hot loops)."""
        return f"{self.objects_str}/{object_relpath(otype, csum, self.mode)}"

    def has(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object is present (symlink objects count, without following them)."""
        try:
            os.lstat(self.path_str(otype, csum))
        except FileNotFoundError:
            return False
        return True

    def index(self) -> ObjectIndex:
        """A presence test for many lookups: one directory listing per prefix, not a stat each."""
        return ObjectIndex(self)

    def iter_objects(self) -> Iterable[tuple[ObjectType, Checksum]]:
        """Every object in the store (order unspecified)."""
        exts = {t.value: t for t in ObjectType}
        exts["filez"] = ObjectType.FILE
        try:
            prefixes = os.listdir(self.objects)
        except FileNotFoundError:
            return
        for prefix in prefixes:
            if len(prefix) != 2:
                continue
            for name in os.listdir(self.objects / prefix):
                rest, _, ext = name.partition(".")
                otype = exts.get(ext)
                if otype is not None and len(rest) == 62:
                    yield otype, Checksum(prefix + rest)

    # --- reading -----------------------------------------------------------------------------

    def load_metadata(self, otype: ObjectType, csum: Checksum) -> bytes:
        """The raw bytes of a metadata object.

        Raises:
            ObjectMissing: if absent.
        """
        # os-level calls: a checkout reads one of these per directory, and io.open's buffered
        # file object costs more than the read itself for objects of a few hundred bytes.
        try:
            fd = os.open(self.path_str(otype, csum), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectMissing(csum, otype.value) from None
        try:
            return _fs.read_all(fd)
        finally:
            os.close(fd)

    def open_file(self, csum: Checksum) -> tuple[FileHeader, BinaryIO | None]:
        """The header and a content stream (``None`` for symlinks) of a content object.

        Raises:
            ObjectMissing: if absent.
            CorruptObject: if its stored metadata cannot be parsed.
        """
        path = self.path(ObjectType.FILE, csum)
        try:
            if self.mode is RepoMode.ARCHIVE:
                return self._open_archive(csum, path)
            st = os.lstat(path)
        except FileNotFoundError:
            raise ObjectMissing(csum, "file") from None
        try:
            if self.mode is RepoMode.BARE_USER:
                raw = os.getxattr(path, BARE_USER_XATTR, follow_symlinks=False)
                uid, gid, mode, xattrs = decode_bare_user_meta(raw)
                if stat.S_ISLNK(mode):
                    with open(path, "rb") as f:
                        data = f.read()
                    if not data.endswith(b"\0"):
                        raise FormatError("bare-user symlink object lacks its NUL terminator")
                    return FileHeader(uid, gid, mode, 0, data[:-1].decode("utf-8", "surrogateescape"), xattrs), None
                return FileHeader(uid, gid, mode, 0, "", xattrs), open(path, "rb")
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                if self.mode is RepoMode.BARE_USER_ONLY:
                    return FileHeader(0, 0, stat.S_IFLNK | 0o777, 0, target), None
                return FileHeader(st.st_uid, st.st_gid, st.st_mode, 0, target, _fs.list_xattrs(path)), None
            if self.mode is RepoMode.BARE_USER_ONLY:
                return FileHeader(0, 0, st.st_mode, 0, ""), open(path, "rb")
            return FileHeader(st.st_uid, st.st_gid, st.st_mode, 0, "", _fs.list_xattrs(path)), open(path, "rb")
        except (FormatError, OSError) as e:
            if isinstance(e, OSError) and e.errno == errno.ENODATA:
                raise CorruptObject(csum, "file", f"missing {BARE_USER_XATTR} xattr") from e
            raise CorruptObject(csum, "file", str(e)) from e

    def _open_archive(self, csum: Checksum, path: Path) -> tuple[FileHeader, BinaryIO | None]:
        f = open(path, "rb")
        try:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise FormatError("truncated header")
            hlen = int.from_bytes(prefix[:4], "big")
            rest = f.read(hlen)
            parsed = decode_archive_header(prefix + rest)
        except FormatError as e:
            f.close()
            raise CorruptObject(csum, "file", str(e)) from e
        except BaseException:
            f.close()
            raise
        if parsed.header.is_symlink:
            f.close()
            return parsed.header, None
        return parsed.header, cast(BinaryIO, _InflatingReader(f, parsed.size))

    def load_file(self, csum: Checksum) -> tuple[FileHeader, bytes]:
        """Header and whole content of a content object (for small files and tests)."""
        header, stream = self.open_file(csum)
        if stream is None:
            return header, b""
        with stream:
            try:
                return header, stream.read()
            except FormatError as e:
                raise CorruptObject(csum, "file", str(e)) from e

    # --- verification --------------------------------------------------------------------------

    def verify_file(self, csum: Checksum) -> None:
        """Recompute a content object's checksum from what is stored.

        Raises:
            ObjectMissing, CorruptObject: when absent, unparseable, or the checksum differs.
        """
        header, stream = self.open_file(csum)
        if header.is_symlink:
            actual = header.checksum()
        else:
            assert stream is not None
            hasher = hashlib.sha256(header.checksum_prefix())
            with stream:
                try:
                    for chunk in iter(lambda: stream.read(CHUNK), b""):
                        hasher.update(chunk)
                except FormatError as e:
                    raise CorruptObject(csum, "file", str(e)) from e
            actual = Checksum(hasher.hexdigest())
        if actual != csum:
            raise ChecksumMismatch(csum, actual, "file")

    # --- writing (to a temporary path; the transaction publishes) -------------------------------

    def _level_for(self, head: bytes, size: int) -> int:
        """The deflate level for a file: the configured one, or 0 (stored) when incompressible.

        Already-compressed content (kernels, gzip'd initramfs, media) gains under 1% from
        deflate yet costs most of an archive commit's CPU; a probe of its first bytes decides.
        """
        if size < _PROBE_MIN_SIZE or len(head) < _PROBE_BYTES:
            return self.zlib_level
        comp = self._compressobj(self.zlib_level, zlib.DEFLATED, -15)
        probe = len(comp.compress(head[:_PROBE_BYTES])) + len(comp.flush())
        return 0 if probe >= _PROBE_BYTES * _INCOMPRESSIBLE_RATIO else self.zlib_level

    def write_content_tmp(
        self,
        tmp: Path | str,
        header: FileHeader,
        chunks: Iterable[bytes],
        size: int,
        *,
        hash_content: bool = True,
    ) -> Checksum | None:
        """Write a content object in this store's mode at ``tmp``, hashing as it goes.

        ``chunks`` must yield exactly ``size`` bytes (nothing for symlinks). Returns the
        checksum computed from header and content, or ``None`` with ``hash_content=False``
        (for callers that hashed the very same bytes already).

        Raises:
            RepoError: if the chunks do not add up to ``size``.
        """
        hasher = hashlib.sha256(header.checksum_prefix()) if hash_content else None
        total = 0

        def counted() -> Iterable[bytes]:
            nonlocal total
            for c in chunks:
                total += len(c)
                if hasher is not None:
                    hasher.update(c)
                yield c

        mode = self.mode
        if header.is_symlink:
            for _ in counted():
                pass
            if mode is RepoMode.ARCHIVE:
                _write_file(tmp, [encode_archive_header(header, 0)], 0o644, umask=self._umask)
            elif mode is RepoMode.BARE_USER:
                _write_file(
                    tmp,
                    [header.symlink_target.encode("utf-8", "surrogateescape") + b"\0"],
                    0o644,
                    xattrs=[(BARE_USER_XATTR, encode_bare_user_meta(header))],
                    zero_mtime=True,
                    umask=self._umask,
                )
            else:
                os.symlink(header.symlink_target, tmp)
                if mode is RepoMode.BARE:
                    if (header.uid, header.gid) != self._creator:
                        os.lchown(tmp, header.uid, header.gid)
                    for name, value in header.xattrs:
                        os.setxattr(tmp, name, value, follow_symlinks=False)
                os.utime(tmp, (0, 0), follow_symlinks=False)
        elif mode is RepoMode.ARCHIVE:
            source = iter(counted())
            first = next(source, b"")
            level = self._level_for(first, size)
            body = deflate_chunks(_prepend(first, source), level, self._compressobj)
            _write_file(tmp, _prepend(encode_archive_header(header, size), body), 0o644, umask=self._umask)
        elif mode is RepoMode.BARE_USER:
            _write_file(
                tmp,
                counted(),
                bare_user_disk_mode(header.mode),
                xattrs=[(BARE_USER_XATTR, encode_bare_user_meta(header))],
                zero_mtime=True,
                umask=self._umask,
            )
        elif mode is RepoMode.BARE_USER_ONLY:
            _write_file(tmp, counted(), header.mode, zero_mtime=True, umask=self._umask)
        else:  # bare
            owner = (header.uid, header.gid)
            _write_file(
                tmp,
                counted(),
                header.mode,
                owner=None if owner == self._creator else owner,
                xattrs=header.xattrs,
                zero_mtime=True,
                umask=self._umask,
            )
        if total != size:
            raise RepoError(f"content source changed while reading: expected {size} bytes, got {total}")
        return Checksum(hasher.hexdigest()) if hasher is not None else None

    def write_archived_tmp(self, tmp: Path | str, filez: bytes, expected: Checksum) -> None:
        """Verify a ``.filez`` object received from elsewhere and store it at ``tmp``.

        In archive mode the verified bytes are kept as they are (no recompression).

        Raises:
            ChecksumMismatch: if the content does not hash to ``expected``.
            CorruptObject: if it does not parse or inflate.
        """
        try:
            parsed = decode_archive_header(filez)
            body = bytes(memoryview(filez)[parsed.body_offset :])
            if parsed.header.is_symlink:
                if len(body):
                    raise FormatError("symlink object has a body")
                data = b""
            else:
                data = b"".join(inflate_chunks([body], parsed.size, _DECOMPRESSOBJ, _INFLATE_ERRORS))
        except FormatError as e:
            raise CorruptObject(expected, "file", str(e)) from e
        actual = parsed.header.checksum(data)
        if actual != expected:
            raise ChecksumMismatch(expected, actual, "file")
        if self.mode is RepoMode.ARCHIVE:
            _write_file(tmp, [filez], 0o644, umask=self._umask)
        else:
            self.write_content_tmp(tmp, parsed.header, [data] if data else [], len(data), hash_content=False)


class ObjectIndex:
    """Which objects a store holds, from one listing of each ``objects/XX`` directory asked about.

    A pull asks "do we have it?" for every file of every tree it walks: 12,000 ``lstat`` calls for
    the benchmark corpus, half a second on the machine measured, against a few milliseconds to
    list the 256 prefix directories. The listing is a snapshot taken on first use of a prefix;
    :meth:`add` records objects this process publishes later. An object another process adds
    meanwhile reads as missing, which costs at most a redundant download, never a wrong answer
    the other way (objects are only removed by prune, under the exclusive repository lock).
    """

    def __init__(self, store: DiskObjectStore) -> None:
        self._store = store
        self._names: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _listing(self, prefix: str) -> set[str]:
        names = self._names.get(prefix)
        if names is None:
            try:
                listed = set(os.listdir(f"{self._store.objects_str}/{prefix}"))
            except (FileNotFoundError, NotADirectoryError):
                listed = set()
            with self._lock:
                names = self._names.setdefault(prefix, listed)
        return names

    def has(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object was present when its prefix was listed (or was added since)."""
        rel = self._store.relpath(otype, csum)
        return rel[3:] in self._listing(rel[:2])

    def add(self, rel: str) -> None:
        """Record that the object at ``rel`` (relative to ``objects/``) now exists."""
        names = self._names.get(rel[:2])
        if names is not None:
            with self._lock:
                names.add(rel[3:])


def _prepend(first: bytes, rest: Iterable[bytes]) -> Iterable[bytes]:
    yield first
    yield from rest


#: Files at least this large have their writeback started as soon as they are written.
_WRITEBACK_MIN = 256 << 10


def _read_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would race other threads)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777  # unknown: always fchmod


def _write_file(
    path: Path | str,
    chunks: Iterable[bytes],
    mode: int,
    owner: tuple[int, int] | None = None,
    *,
    xattrs: Iterable[tuple[str | bytes, bytes]] = (),
    zero_mtime: bool = False,
    umask: int = 0o777,
) -> None:
    """Create ``path`` with ``chunks``, then owner, xattrs, mode and (optionally) mtime 0.

    A repository write creates thousands of these, so every call not needed is skipped: the file
    is created with its final mode when ``umask`` (the process's, as far as the caller knows)
    keeps it (no ``fchmod``), ``fchown`` is left
    out when the file already has that owner (a file is created with the caller's euid/egid unless
    a set-group-ID directory gives it its group, see :meth:`DiskObjectStore.creator`), and all
    metadata goes through the open descriptor instead of a second path lookup.
    """
    mode &= 0o7777
    # Set-ID bits are cleared by fchown and may be dropped by open itself: set them last.
    direct = not (mode & umask) and not (mode & 0o6000)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode if direct else 0o600)
    try:
        written = 0
        for chunk in chunks:
            view = memoryview(chunk)
            written += len(view)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        if written >= _WRITEBACK_MIN:
            _fs.start_writeback(fd)
        if owner is not None:
            os.fchown(fd, *owner)
        for name, value in xattrs:
            os.setxattr(fd, name, value)
        if not direct:
            os.fchmod(fd, mode)
        if zero_mtime:
            os.utime(fd, ns=(0, 0))
    finally:
        os.close(fd)
