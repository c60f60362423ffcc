"""``ostree export``: a commit's tree (or a subtree of it) as a GNU tar archive.

Layer: repo. As ostree writes it (libarchive's gnutar format): the root is ``.`` (or the
prefix), each directory comes before its entries, every entry carries the commit's timestamp
as its times and its owner and mode by number, and no hardlinks are made (a content object
used twice is written twice). GNU tar has no extended attributes, so none are written (ostree's
``--no-xattrs`` changes nothing in this format either).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
from typing import TYPE_CHECKING, BinaryIO

from bootree import _fs
from bootree.errors import RepoError
from bootree.format.checksum import Checksum
from bootree.repo.reader import EntryKind

__all__ = ["export_tar", "export_tar_file"]

if TYPE_CHECKING:
    from bootree.repo.repo import Repo


def export_tar(repo: Repo, rev: Checksum, out: BinaryIO, *, subpath: str = "/", prefix: str = "") -> int:
    """Write the tree of commit ``rev`` under ``subpath`` to ``out`` as a tar stream.

    ``prefix`` is prepended to every member name (``the-prefix/`` makes ``the-prefix/usr``;
    the root becomes the prefix itself). Returns the number of members written.

    Raises:
        RepoError: if ``subpath`` does not exist in the commit.
        ObjectMissing, CorruptObject: for a damaged tree.
    """
    commit = repo.read_commit(rev)
    mtime = commit.timestamp
    count = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tf:
        top: str | None = None
        for e in repo.walk_entries(rev, subpath):
            if top is None:
                top = e.path.rstrip("/")
            rel = e.path[len(top) :].lstrip("/")
            name = f"{prefix}{rel}" if prefix else (rel or ".")
            info = tarfile.TarInfo(name or ".")
            info.mtime = mtime
            if e.kind is EntryKind.DIR:
                assert e.meta is not None
                meta = repo.read_dirmeta(e.meta)
                info.type = tarfile.DIRTYPE
                info.uid, info.gid, info.mode = meta.uid, meta.gid, stat.S_IMODE(meta.mode)
                tf.addfile(info)
            else:
                with repo.store.open_file(e.checksum) as obj:
                    h = obj.header
                    info.uid, info.gid, info.mode = h.uid, h.gid, stat.S_IMODE(h.mode)
                    if stat.S_ISLNK(h.mode):
                        info.type = tarfile.SYMTYPE
                        info.linkname = h.symlink_target
                        tf.addfile(info)
                    else:
                        if obj.stream is None:
                            raise RepoError(f"content object {e.checksum} has no data")
                        if obj.size >= 0:  # streamed: an object may be larger than memory
                            info.size = obj.size
                            tf.addfile(info, obj.stream)
                        else:
                            data = obj.read()
                            info.size = len(data)
                            tf.addfile(info, io.BytesIO(data))
            count += 1
    return count


def export_tar_file(repo: Repo, rev: Checksum, path: os.PathLike[str] | str, *, subpath: str = "/", prefix: str = "") -> int:
    """:func:`export_tar` into the file ``path``, which appears whole or not at all (temp, fsync, rename).

    Raises:
        RepoError, ObjectMissing, CorruptObject: as :func:`export_tar`.
        OSError: if the file cannot be written.
    """
    target = os.fspath(path)
    tmp = os.path.join(os.path.dirname(target) or ".", _fs.temp_name(".export-"))
    try:
        with open(tmp, "xb") as f:
            count = export_tar(repo, rev, f, subpath=subpath, prefix=prefix)
            f.flush()
            _fs.fsync(f.fileno())
        _fs.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fs.fsync_dir(os.path.dirname(target) or ".")
    return count
