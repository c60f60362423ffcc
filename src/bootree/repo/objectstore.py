"""The on-disk object store: where each object lives and how each mode encodes content.

Layer: repo. This module knows the bytes-on-disk of every mode; it does not know about
transactions or refs. Writers here create a *temporary* file (in a staging directory chosen by
the caller) and return; publishing it under its final name is the transaction's job.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from bootree import _fs
from bootree.errors import ChecksumMismatch, CorruptObject, FormatError, ObjectMissing
from bootree.format.checksum import Checksum, ObjectType, parse_object_names
from bootree.format.checksum import object_relpath as _object_relpath
from bootree.format.content import (
    BARE_USER_XATTR,
    CompressorFactory,
    decode_archive_header,
    decode_bare_user_meta,
    inflate_whole,
    read_archive_header,
)
from bootree.format.objects import FileHeader
from bootree.repo.contentio import (
    CHUNK,
    DECOMPRESSOBJ,
    FAST_COMPRESSOBJ,
    INFLATE_ERRORS,
    ContentSink,
    InflatingReader,
    read_umask,
    write_whole,
)
from bootree.repo.modes import RepoMode

__all__ = ["CHUNK", "ContentObject", "DiskObjectStore", "ObjectIndex", "object_relpath"]

#: The smallest possible object file of each kind in the modes where object files hold all
#: their bytes: "do we have it?" never trusts a file shorter than that (a write that failed
#: half-way, e.g. on a full disk, before the rules of issue 10 existed).
MIN_METADATA_SIZE = 1
#: A ``.filez``: 8-byte prefix, the header's fixed part (size, uid, gid, mode, rdev) and framing.
MIN_FILEZ_SIZE = 8 + 8 + 16


def object_relpath(otype: ObjectType, csum: Checksum, mode: RepoMode) -> str:
    """``ab/cdef….ext`` relative to ``objects/`` (content is ``.filez`` in archive mode)."""
    return _object_relpath(otype, csum, archive=mode is RepoMode.ARCHIVE)


@dataclass(frozen=True, slots=True)
class ContentObject:
    """A content object opened for reading: its header and, for a regular file, its content.

    ``stream`` is ``None`` for a symlink; otherwise the caller closes it (or uses ``with``).
    ``size`` is the uncompressed content size where known without reading (archive header,
    file size), else -1.
    """

    header: FileHeader
    stream: BinaryIO | None
    size: int

    def __enter__(self) -> ContentObject:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.close()

    def read(self) -> bytes:
        """The whole content (empty for a symlink), closing the stream.

        Raises:
            FormatError: if an archived body does not inflate.
        """
        if self.stream is None:
            return b""
        with self.stream:
            return self.stream.read()


#: The reads that fall back to a parent repository (see :meth:`DiskObjectStore.set_parent`).
_PARENT_READS = ("load_metadata", "open_file", "content_size", "stat_file", "load_file", "verify_file")


def _or_parent(own: Callable[..., object], fallback: Callable[..., object]) -> Callable[..., object]:
    """``own``, or ``fallback`` when the object is not here."""

    @functools.wraps(own)
    def read(*args: object, **kwargs: object) -> object:
        try:
            return own(*args, **kwargs)
        except ObjectMissing:
            return fallback(*args, **kwargs)

    return read


class DiskObjectStore:
    """Objects under ``<repo>/objects`` in one of the four modes (implements :class:`ObjectStore`).

    ``parent`` (ostree's ``[core] parent``) is another repository's store that reads fall back
    to: objects there are not copied into this one, and this one's prune leaves them alone.
    """

    def __init__(self, root: Path, mode: RepoMode, *, zlib_level: int = 6, fast_zlib: bool = True) -> None:
        self.root = root
        self.objects = root / "objects"
        #: ``objects`` as a string, for building paths in hot loops.
        self.objects_str = os.fspath(self.objects)
        self.mode = mode
        self.zlib_level = zlib_level
        self.parent: DiskObjectStore | None = None
        self._creator: tuple[int, int] | None = None
        self._meta_memo: dict[bytes, FileHeader] = {}  # user.ostreemeta -> regular file header (stat_file)
        #: 0o777 until prepare_writes() knows better: every write then sets its mode explicitly.
        self._umask = 0o777
        self._compressobj: CompressorFactory = (
            FAST_COMPRESSOBJ if fast_zlib and FAST_COMPRESSOBJ is not None else cast(CompressorFactory, zlib.compressobj)
        )

    def prepare_writes(self) -> None:
        """Learn what a newly created file gets without asking: the umask and the owner.

        Called at the start of every transaction. A file is created with the process's
        effective uid and gid, unless ``tmp/`` is set-group-ID (then its group is the
        directory's, and every write ``fchown``s); its mode is the requested one minus the umask.
        Knowing both lets the writers skip ``fchown`` and ``fchmod`` for most objects.
        """
        try:
            setgid = bool(os.stat(self.root / "tmp").st_mode & stat.S_ISGID)
        except OSError:
            setgid = True
        self._creator = None if setgid else (os.geteuid(), os.getegid())
        self._umask = read_umask()

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

    def set_parent(self, parent: DiskObjectStore) -> None:
        """Make reads of objects missing here fall back to ``parent`` (ostree's ``[core] parent``).

        The fallbacks are installed on this instance only, so a store without a parent pays
        nothing for them in its hot loops.
        """
        self.parent = parent
        for name in _PARENT_READS:
            setattr(self, name, _or_parent(getattr(self, name), getattr(parent, name)))

    def has(self, otype: ObjectType, csum: Checksum) -> bool:
        """Whether the object is present (symlink objects count, without following them).

        A file too short to be the object (a metadata object of 0 bytes, a ``.filez`` shorter
        than its fixed header) is not trusted: it reads as absent, so that a pull or commit
        writes the object again instead of building on a half-written one. The size comes
        with the ``lstat`` this needs anyway.
        """
        try:
            st = os.lstat(self.path_str(otype, csum))
        except FileNotFoundError:
            return self.parent is not None and self.parent.has(otype, csum)
        return st.st_size >= self._min_size(otype) or stat.S_ISLNK(st.st_mode)

    def _min_size(self, otype: ObjectType) -> int:
        if otype is not ObjectType.FILE:
            return MIN_METADATA_SIZE if otype is not ObjectType.COMMIT_META else 0
        return MIN_FILEZ_SIZE if self.mode is RepoMode.ARCHIVE else 0

    def index(self) -> ObjectIndex:
        """A presence test for many lookups: one directory listing per prefix, not a stat each."""
        return ObjectIndex(self)

    def iter_objects(self) -> Iterable[tuple[ObjectType, Checksum]]:
        """Every object in the store (order unspecified)."""
        try:
            prefixes = os.listdir(self.objects)
        except FileNotFoundError:
            return
        objects = self.objects_str
        for prefix in prefixes:
            if len(prefix) == 2:
                yield from parse_object_names(prefix, os.listdir(f"{objects}/{prefix}"))

    def delete(self, otype: ObjectType, csum: Checksum) -> None:
        """Remove an object if present (prune, under the exclusive repository lock)."""
        try:
            os.unlink(self.path_str(otype, csum))
        except FileNotFoundError:
            pass

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

    def open_file(self, csum: Checksum) -> ContentObject:
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
                    target = data[:-1].decode("utf-8", "surrogateescape")
                    return ContentObject(FileHeader(uid, gid, mode, 0, target, xattrs), None, 0)
                return ContentObject(FileHeader(uid, gid, mode, 0, "", xattrs), open(path, "rb"), st.st_size)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                if self.mode is RepoMode.BARE_USER_ONLY:
                    return ContentObject(FileHeader(0, 0, stat.S_IFLNK | 0o777, 0, target), None, 0)
                header = FileHeader(st.st_uid, st.st_gid, st.st_mode, 0, target, _fs.list_xattrs(path))
                return ContentObject(header, None, 0)
            if self.mode is RepoMode.BARE_USER_ONLY:
                return ContentObject(FileHeader(0, 0, st.st_mode, 0, ""), open(path, "rb"), st.st_size)
            header = FileHeader(st.st_uid, st.st_gid, st.st_mode, 0, "", _fs.list_xattrs(path))
            return ContentObject(header, open(path, "rb"), st.st_size)
        except (FormatError, OSError) as e:
            if isinstance(e, OSError) and e.errno == errno.ENODATA:
                raise CorruptObject(csum, "file", f"missing {BARE_USER_XATTR} xattr") from e
            raise CorruptObject(csum, "file", str(e)) from e

    def _open_archive(self, csum: Checksum, path: Path) -> ContentObject:
        f = open(path, "rb")
        try:
            parsed = read_archive_header(f.read)
        except FormatError as e:
            f.close()
            raise CorruptObject(csum, "file", str(e)) from e
        except BaseException:
            f.close()
            raise
        if parsed.header.is_symlink:
            f.close()
            return ContentObject(parsed.header, None, 0)
        return ContentObject(parsed.header, cast(BinaryIO, InflatingReader(f, parsed.size)), parsed.size)

    def content_size(self, csum: Checksum) -> int:
        """A content object's uncompressed size without reading its content (``ls -l``).

        Raises:
            ObjectMissing, CorruptObject: as :meth:`open_file`.
        """
        if self.mode is RepoMode.ARCHIVE:
            with self.open_file(csum) as obj:
                return obj.size
        try:
            return os.lstat(self.path_str(ObjectType.FILE, csum)).st_size
        except FileNotFoundError:
            raise ObjectMissing(csum, "file") from None

    def stat_file(self, csum: Checksum) -> tuple[FileHeader, int]:
        """The header and content size of a content object, without reading the content.

        Raises:
            ObjectMissing, CorruptObject: as :meth:`open_file`.
        """
        if self.mode is RepoMode.BARE_USER:
            return self._stat_bare_user(csum)
        with self.open_file(csum) as obj:  # archive: the header only; the body is inflated lazily
            return obj.header, 0 if obj.stream is None else obj.size

    def _stat_bare_user(self, csum: Checksum) -> tuple[FileHeader, int]:
        # One lstat and one getxattr per object; the header decode is shared by every object
        # with the same owner, mode and xattrs (most of a tree), so it is memoised.
        path = self.path_str(ObjectType.FILE, csum)
        try:
            st = os.lstat(path)
            raw = os.getxattr(path, BARE_USER_XATTR, follow_symlinks=False)
        except FileNotFoundError:
            raise ObjectMissing(csum, "file") from None
        except OSError as e:
            if e.errno == errno.ENODATA:
                raise CorruptObject(csum, "file", f"missing {BARE_USER_XATTR} xattr") from e
            raise CorruptObject(csum, "file", str(e)) from e
        try:
            header = self._meta_memo.get(raw)
            if header is not None:
                return header, st.st_size
            uid, gid, mode, xattrs = decode_bare_user_meta(raw)
            if stat.S_ISLNK(mode):  # the target is the object's content: not memoised
                with open(path, "rb") as f:
                    data = f.read()
                if not data.endswith(b"\0"):
                    raise FormatError("bare-user symlink object lacks its NUL terminator")
                return FileHeader(uid, gid, mode, 0, data[:-1].decode("utf-8", "surrogateescape"), xattrs), 0
            header = FileHeader(uid, gid, mode, 0, "", xattrs)
        except FormatError as e:
            raise CorruptObject(csum, "file", str(e)) from e
        if len(self._meta_memo) < 4096:
            self._meta_memo[raw] = header
        return header, st.st_size

    def load_file(self, csum: Checksum) -> tuple[FileHeader, bytes]:
        """Header and whole content of a content object (for small files and tests)."""
        obj = self.open_file(csum)
        try:
            return obj.header, obj.read()
        except FormatError as e:
            raise CorruptObject(csum, "file", str(e)) from e

    # --- verification --------------------------------------------------------------------------

    def verify_file(self, csum: Checksum) -> None:
        """Recompute a content object's checksum from what is stored.

        Raises:
            ObjectMissing, CorruptObject: when absent, unparseable, or the checksum differs.
        """
        if self.mode is RepoMode.ARCHIVE and self._verify_archived_whole(csum):
            return
        obj = self.open_file(csum)
        if obj.stream is None:
            _check_hash(csum, obj.header, ())
            return
        stream = obj.stream
        with stream:
            _check_hash(csum, obj.header, iter(lambda: stream.read(CHUNK), b""))

    def _verify_archived_whole(self, csum: Checksum) -> bool:
        """:meth:`verify_file` of a small ``.filez`` (:data:`CHUNK` bytes, 4 inflated): one read, one inflate.

        fsck verifies thousands of small objects; a buffered file, the inflating reader and a
        path object per object cost more than the inflate. False (nothing checked) for a larger
        file, which is streamed instead.
        """
        try:
            fd = os.open(self.path_str(ObjectType.FILE, csum), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectMissing(csum, "file") from None
        try:
            size = os.fstat(fd).st_size
            if size > CHUNK:
                return False
            data = os.read(fd, size)
            if len(data) < size:
                data += _fs.read_all(fd)
        finally:
            os.close(fd)
        try:
            parsed = decode_archive_header(data)
            if parsed.size > 4 * CHUNK:
                return False  # inflated in one piece here: a large content is streamed instead
            content = b""  # a symlink has no body (bytes after its header are ignored, as by open_file)
            if not parsed.header.is_symlink:
                content = inflate_whole(memoryview(data)[parsed.body_offset :], parsed.size, DECOMPRESSOBJ, INFLATE_ERRORS)
        except FormatError as e:
            raise CorruptObject(csum, "file", str(e)) from e
        _check_hash(csum, parsed.header, (content,))
        return True

    # --- writing (to a temporary path; the transaction verifies and publishes) -----------------

    def content_sink(self, path: str, header: FileHeader, size: int | None, *, raw: bool = False) -> ContentSink:
        """A writer of one content object in this store's mode at ``path`` (see ContentSink).

        ``raw`` (archive mode only) stores ``.filez`` bytes as they are given.
        """
        return ContentSink(
            path,
            header,
            size,
            self.mode,
            creator=self._creator,
            umask=self._umask,
            zlib_level=self.zlib_level,
            compressobj=self._compressobj,
            raw=raw,
        )

    def metadata_file(self, path: str, data: bytes) -> None:
        """Create a metadata object file with exactly ``data`` at ``path`` (removed on failure)."""
        write_whole(path, data, self._umask)


def _check_hash(csum: Checksum, header: FileHeader, content: Iterable[bytes]) -> None:
    """Hash ``header`` and its content as it is read; it must be ``csum``.

    Raises:
        CorruptObject: the content does not read (inflate) to its declared size.
        ChecksumMismatch: it hashes to something else.
    """
    hasher = hashlib.sha256(header.checksum_prefix())
    try:
        for chunk in content:
            hasher.update(chunk)
    except FormatError as e:
        raise CorruptObject(csum, "file", str(e)) from e
    actual = Checksum(hasher.hexdigest())
    if actual != csum:
        raise ChecksumMismatch(csum, actual, "file")


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
        """Whether the object was present when its prefix was listed (or was added since).

        A metadata object found in the listing is also checked by size (one ``lstat``: there
        are few of them, and a pull builds its walk on them), so a zero-length dirtree is never
        trusted; content objects, the many, are answered from the listing alone.
        """
        rel = self._store.relpath(otype, csum)
        if rel[3:] not in self._listing(rel[:2]):
            parent = self._store.parent
            return parent is not None and parent.has(otype, csum)
        return otype is ObjectType.FILE or self._store.has(otype, csum)

    def add(self, rel: str) -> None:
        """Record that the object at ``rel`` (relative to ``objects/``) now exists."""
        names = self._names.get(rel[:2])
        if names is not None:
            with self._lock:
                names.add(rel[3:])


