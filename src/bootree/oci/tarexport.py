"""Commit → tar layers in ostree-ext's export format, written reproducibly and streamed.

Layer: oci. This is the writing half of ``ostree container encapsulate`` (ostree-ext
``tar/export.rs``, format version 1), so an image bootree exports reads the same to bootc:

* every layer starts with the repository skeleton ``sysroot/ostree/repo`` (``objects/00``…``ff``,
  ``refs``, ``state``, ``tmp``…, and a ``config`` with ``mode=bare-split-xattrs``);
* a content object is stored once, as ``sysroot/ostree/repo/objects/xx/<rest>.file`` (a regular
  file or a symlink, owner and mode from the object), preceded by its xattrs object
  ``<sha256 of the xattrs GVariant>.file-xattrs`` and a ``.file-xattrs-link`` hardlink to it;
* each path of the tree that holds the object is a hardlink to it (``usr/etc`` written as
  ``etc``), except empty regular files, which are written in place;
* the *commit layer* also holds the commit (and detached metadata), every dirtree and dirmeta
  object and a directory entry for every directory of the tree (``./``-prefixed, as
  ostree-ext's v0 paths), ``var/tmp`` if the tree lacks it, then the content that no chunk took.

bootree adds ``SCHILY.xattr.*`` PAX records to objects, empty files and directories, so a plain
OCI consumer (podman, or bootree's own layer import) gets the xattrs without knowing about
``.file-xattrs``; headers are plain ustar where they fit (long object paths go in the ustar
prefix) and PAX only where needed, so most entries cost one 512-byte header. Reproducible: entries in a fixed order (objects sorted by checksum, paths
sorted), mtime 0 (ostree-ext's choice: a timestamp from the commit would change every layer of
every new build and defeat chunking), no user or group names, deterministic compression. The
blob is never held in memory: tar bytes are hashed (diff_id), compressed and hashed again
(digest) as they are produced, into a temporary file beside the final blob.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Protocol, cast

from bootree import _fs
from bootree.errors import ImageError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.gvariant import encode
from bootree.format.objects import DirMeta, FileHeader, Xattrs
from bootree.format.oci import Compression
from bootree.oci.zchunktar import header_format
from bootree.repo import Repo

__all__ = [
    "LAYER_MEDIA_TYPES",
    "BlobSink",
    "LayerBlob",
    "OstreeTarWriter",
    "object_path",
]

OSTREEDIR = "sysroot/ostree"
REPO_CONFIG = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n"
_REPO_SUBDIRS = ("extensions", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp", "tmp/cache")
_FLUSH = 1 << 20

LAYER_MEDIA_TYPES = {
    Compression.GZIP: "application/vnd.oci.image.layer.v1.tar+gzip",
    Compression.ZSTD: "application/vnd.oci.image.layer.v1.tar+zstd",
    Compression.NONE: "application/vnd.oci.image.layer.v1.tar",
    "zstd:chunked": "application/vnd.oci.image.layer.v1.tar+zstd",
}

_SUFFIX = {"commit": "commit", "commitmeta": "commitmeta", "dirtree": "dirtree", "dirmeta": "dirmeta", "file": "file"}


def object_path(kind: str, csum: str) -> str:
    """``sysroot/ostree/repo/objects/xx/<rest>.<kind>`` (``kind``: commit, dirtree, file, ...)."""
    return f"{OSTREEDIR}/repo/objects/{csum[:2]}/{csum[2:]}.{kind}"


def xattrs_bytes(xattrs: Xattrs) -> bytes:
    """The ``a(ayay)`` GVariant of xattrs (names NUL-terminated), as ostree serializes them."""
    return encode("a(ayay)", [(name + b"\0", value) for name, value in xattrs])


def map_path(path: str) -> str:
    """ostree-ext's v1 path mapping: ``usr/etc/…`` is written as ``etc/…``."""
    if path == "usr/etc" or path.startswith("usr/etc/"):
        return path[4:]
    return path


@dataclass(frozen=True, slots=True)
class LayerBlob:
    """A finished layer: compressed digest and size, uncompressed digest (diff_id), media type."""

    digest: str
    size: int
    diff_id: str
    media_type: str
    path: Path
    annotations: dict[str, str] = field(default_factory=dict)
    """Layer descriptor annotations the format needs (zstd:chunked's TOC position and checksum)."""


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _ZstdCompressor:
    """zstandard's compressobj behind the zlib-like interface (one frame, no content size)."""

    def __init__(self, level: int) -> None:
        import zstandard  # only zstd layers need it

        self._c = zstandard.ZstdCompressor(level=level, write_content_size=False).compressobj()

    def compress(self, data: bytes, /) -> bytes:
        out: bytes = self._c.compress(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._c.flush()
        return out


class _Identity:
    def compress(self, data: bytes, /) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def _compressor(compression: str, level: int | None) -> _Compressor:
    if compression == Compression.GZIP:
        # wbits 31: a gzip member with mtime 0 and no file name, so the bytes are reproducible.
        return zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
    if compression == Compression.ZSTD:
        return _ZstdCompressor(3 if level is None else level)
    if compression == Compression.NONE:
        return _Identity()
    raise ImageError(f"unknown layer compression {compression!r}", hint="use gzip, zstd or none")


class BlobSink(io.RawIOBase):
    """A write-only stream: tar bytes in, a verified compressed blob file out.

    Bytes are buffered to 1 MiB, so hashing and compression (which release the GIL) run on
    large buffers and two layers can be produced on two cores at the same time.
    """

    def __init__(self, directory: Path, compression: str = Compression.GZIP, level: int | None = None) -> None:
        super().__init__()
        self.directory = directory
        self.compression = compression
        self._comp = _compressor(compression, level)
        self._diff = hashlib.sha256()
        self._digest = hashlib.sha256()
        self._buf = bytearray()
        self._written = 0
        self._size = 0
        self._tmp = directory / _fs.temp_name(".layer-")
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.annotations: dict[str, str] = {}

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        n = len(data)
        self._buf += data
        self._written += n
        if len(self._buf) >= _FLUSH:
            self._drain()
        return n

    def _drain(self) -> None:
        chunk = bytes(self._buf)
        self._buf.clear()
        self._diff.update(chunk)
        self._emit(self._comp.compress(chunk))

    def _emit(self, out: bytes) -> None:
        if out:
            self._digest.update(out)
            _fs.write_all(self._fd, out)
            self._size += len(out)

    def finish(self) -> LayerBlob:
        """Flush, fsync and rename the blob to ``<directory>/<hex digest>``."""
        self._drain()
        self._emit(self._comp.flush())
        return self._finalize()

    def _finalize(self) -> LayerBlob:
        """fsync and rename the finished blob."""
        _fs.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        digest = "sha256:" + self._digest.hexdigest()
        final = self.directory / digest[7:]
        _fs.rename(self._tmp, final)
        return LayerBlob(digest, self._size, "sha256:" + self._diff.hexdigest(), LAYER_MEDIA_TYPES[self.compression],
                         final, dict(self.annotations))

    def abort(self) -> None:
        """Drop the partial blob (after an error)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tmp.unlink(missing_ok=True)


class _FullReads:
    """A stream whose ``read(n)`` returns ``n`` bytes until the end: tarfile takes a short read
    for the end of the data, and an inflating (archive-mode) object stream may return fewer."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        if n < 0 or len(data) >= n or not data:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = self.inner.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)


def _pax(xattrs: Xattrs) -> dict[str, str]:
    # Values are bytes; tarfile writes str values back with utf-8 + surrogateescape (hdrcharset
    # BINARY when needed), the same mapping bootree's layer import reverses.
    return {"SCHILY.xattr." + n.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
            for n, v in sorted(xattrs)}


class OstreeTarWriter:
    """Entries of one layer in ostree-ext's format, onto a :class:`BlobSink` (or any stream)."""

    def __init__(self, repo: Repo, out: io.RawIOBase) -> None:
        self.repo = repo
        self.tar = tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)
        self._xattrs_written: set[str] = set()
        self._written: set[str] = set()

    def close(self) -> None:
        """Write the end-of-archive blocks."""
        self.tar.close()

    def _add(self, ti: tarfile.TarInfo, data: IO[bytes] | None = None) -> None:
        """Add an entry as a plain ustar header when it fits (long object paths split into the
        ustar prefix), PAX only for xattrs, non-ASCII or overlong names and large ids: one
        512-byte header per entry instead of two for most of a layer."""
        self.tar.format = header_format(ti)
        try:
            self.tar.addfile(ti, data)
        except ValueError:  # a name ustar cannot split: PAX after all
            self.tar.format = tarfile.PAX_FORMAT
            self.tar.addfile(ti, data)

    # --- entries -----------------------------------------------------------------------------

    @staticmethod
    def _info(name: str, kind: bytes, *, uid: int = 0, gid: int = 0, mode: int = 0o644, size: int = 0,
              link: str = "", xattrs: Xattrs = ()) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.uid, ti.gid, ti.mode, ti.size, ti.linkname, ti.mtime = kind, uid, gid, mode, size, link, 0
        ti.uname = ti.gname = ""
        if xattrs:
            ti.pax_headers = _pax(xattrs)
        return ti

    def dir(self, name: str, meta: DirMeta | None = None) -> None:
        """A directory entry (root:root 0755 without ``meta``)."""
        if meta is None:
            self._add(self._info(name, tarfile.DIRTYPE, mode=0o755))
        else:
            self._add(self._info(name, tarfile.DIRTYPE, uid=meta.uid, gid=meta.gid,
                                        mode=stat.S_IMODE(meta.mode), xattrs=meta.xattrs))

    def data(self, name: str, payload: bytes) -> None:
        """A root:root 0644 regular file (repository metadata)."""
        self._add(self._info(name, tarfile.REGTYPE, size=len(payload)), io.BytesIO(payload))

    def hardlink(self, name: str, target: str) -> None:
        """A root:root 0644 hardlink entry."""
        self._add(self._info(name, tarfile.LNKTYPE, link=target))

    def repo_structure(self) -> None:
        """``sysroot/ostree/repo`` with its object directories and config (every layer has it)."""
        objdir = f"{OSTREEDIR}/repo/objects"
        parts = objdir.split("/")
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))
        for d in range(256):
            self.dir(f"{objdir}/{d:02x}")
        for sub in _REPO_SUBDIRS:
            self.dir(f"{OSTREEDIR}/repo/{sub}")
        self.data(f"{OSTREEDIR}/repo/config", REPO_CONFIG)

    def metadata_object(self, kind: str, csum: str, payload: bytes) -> None:
        """A commit, commitmeta, dirtree or dirmeta object (dirtrees and dirmetas once each)."""
        key = f"{kind}:{csum}"
        if kind in ("dirtree", "dirmeta"):
            if key in self._written:
                return
            self._written.add(key)
        self.data(object_path(_SUFFIX[kind], csum), payload)

    def content(self, csum: Checksum, paths: Iterable[str]) -> None:
        """A content object (with its xattrs objects), then a link for each path holding it."""
        obj = self.repo.open_file(csum)
        header: FileHeader = obj.header
        objpath = object_path("file", csum)
        xb = xattrs_bytes(header.xattrs)
        xcsum = hashlib.sha256(xb).hexdigest()
        xpath = object_path("file-xattrs", xcsum)
        if xcsum not in self._xattrs_written:
            self._xattrs_written.add(xcsum)
            self.data(xpath, xb)
        self.hardlink(object_path("file-xattrs-link", csum), xpath)
        mode = stat.S_IMODE(header.mode)
        if stat.S_ISLNK(header.mode):
            ti = self._info(objpath, tarfile.SYMTYPE, uid=header.uid, gid=header.gid, mode=mode,
                            link=header.symlink_target, xattrs=header.xattrs)
            self._add(ti)
            size = 0
        else:
            with obj:
                assert obj.stream is not None
                size = obj.size if obj.size >= 0 else self.repo.content_size(csum)
                ti = self._info(objpath, tarfile.REGTYPE, uid=header.uid, gid=header.gid, mode=mode, size=size,
                                xattrs=header.xattrs)
                self._add(ti, cast(IO[bytes], _FullReads(obj.stream)))
        for path in sorted(map_path(p) for p in paths):
            if size == 0 and stat.S_ISREG(header.mode):
                # ostree-ext: no hardlinks to empty files (container builds rewrite them in place).
                self._add(self._info(path, tarfile.REGTYPE, uid=header.uid, gid=header.gid, mode=mode,
                                            xattrs=header.xattrs))
            else:
                self._add(self._info(path, tarfile.LNKTYPE, uid=header.uid, gid=header.gid, mode=mode,
                                            link=objpath))

    def commit_structure(self, commit: Checksum) -> None:
        """The commit layer's metadata: commit, detached metadata, every dirtree/dirmeta, directories.

        Depth first in dirtree order, as ostree-ext recurses (an explicit stack: no depth limit).
        The root's ``sysroot`` gets no directory entry (the repository skeleton made it).
        """
        repo = self.repo
        c = repo.read_commit(commit)
        self.dir("./", repo.read_dirmeta(c.root_meta))
        self.repo_structure()
        self.metadata_object("commit", commit, repo.load_metadata(ObjectType.COMMIT, commit))
        detached = repo.read_commitmeta(commit)
        if detached is not None:
            self.metadata_object("commitmeta", commit, detached)
        self.metadata_object("dirmeta", c.root_meta, repo.load_metadata(ObjectType.DIR_META, c.root_meta))
        self.metadata_object("dirtree", c.root_tree, repo.load_metadata(ObjectType.DIR_TREE, c.root_tree))
        wrote_vartmp = False
        stack: list[tuple[str, bool, Iterator[tuple[str, Checksum, Checksum]]]] = [
            (".", True, iter(repo.read_dirtree(c.root_tree).dirs))]
        while stack:
            cur, entries, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                continue
            name, sub_tree, sub_meta = nxt
            self.metadata_object("dirmeta", sub_meta, repo.load_metadata(ObjectType.DIR_META, sub_meta))
            sub = f"{cur}/{name}"
            sub_entries = entries and not (cur == "." and name == "sysroot")
            if sub_entries:
                self.dir("./" + map_path(sub[2:]), repo.read_dirmeta(sub_meta))
            self.metadata_object("dirtree", sub_tree, repo.load_metadata(ObjectType.DIR_TREE, sub_tree))
            wrote_vartmp = wrote_vartmp or sub == "./var/tmp"
            stack.append((sub, sub_entries, iter(repo.read_dirtree(sub_tree).dirs)))
        if not wrote_vartmp:
            self._add(self._info("var/tmp", tarfile.DIRTYPE, mode=0o1777))
