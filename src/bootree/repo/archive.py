"""Committing an archive (``--tree=tar=FILE``): tar in any compression, or cpio newc.

Layer: repo. ostree reads these through libarchive; bootree reads tar with :mod:`tarfile`
(streamed: a rootfs tar of gigabytes is never held whole) and cpio with
:mod:`bootree.format.cpio`. ``-`` reads the archive from standard input, as ostree does.

Paths are made relative as libarchive's importer makes them (``./``, leading ``/`` and empty
components dropped; ``..`` refused), then optionally rewritten by ostree's
``--tar-pathname-filter=REGEX,REPLACEMENT`` (hardlink targets too). Directories an entry implies
but the archive does not list are created 0755, owned as that entry (ostree's rule), and the root
of an archive that lists nothing is created the same way as root's.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from bootree.errors import BootreeError, FormatError, SourceError
from bootree.format.checksum import Checksum
from bootree.format.cpio import CPIO_MAGICS, read_newc
from bootree.format.objects import Xattrs, validate_filename
from bootree.repo.commit import CommitOptions, ProgressFn
from bootree.repo.mtree import MutableTree
from bootree.repo.transaction import Transaction

if TYPE_CHECKING:
    import tarfile

__all__ = ["write_archive"]

_DIR, _REG, _SYM, _LNK = "dir", "reg", "sym", "lnk"


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    kind: str
    uid: int
    gid: int
    mode: int
    linkname: str
    data: bytes
    xattrs: Xattrs


def _relative(name: str) -> str:
    """libarchive importer's ``path_relative``: drop ``/`` and ``./`` prefixes and empty parts (a trailing ``/`` stays).

    Raises:
        SourceError: for a ``..`` component or a NUL.
    """
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise SourceError(name, "tar member path escapes the tree ('..')")
        if "\0" in p:
            raise SourceError(name, "tar member name contains NUL")
        parts.append(p)
    # A trailing slash stays (libarchive's "usr/bin/" for a directory): a pathname filter sees it.
    return "/".join(parts) + ("/" if parts and name.endswith("/") else "")


def _split(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for p in parts:
        if p == "..":
            raise SourceError(path, "path escapes the tree ('..')")
        try:
            validate_filename(p)
        except BootreeError as e:
            raise SourceError(path, str(e)) from e
    return parts


def _tar_xattrs(member: tarfile.TarInfo, options: CommitOptions) -> Xattrs:
    if options.no_xattrs or options.canonical_permissions:
        return ()
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            raw = value.encode("utf-8", "surrogateescape")
            if raw:
                out.append((key[len("SCHILY.xattr.") :].encode("utf-8", "surrogateescape"), raw))
    return tuple(sorted(out))


def _tar_entries(stream: BinaryIO, options: CommitOptions) -> Iterator[_Entry]:
    import tarfile  # here, not at module level: most commits read directories

    try:
        tf = tarfile.open(fileobj=stream, mode="r|*")
    except (OSError, tarfile.TarError) as e:
        raise SourceError("<archive>", str(e)) from e
    with tf:
        for m in tf:
            try:
                m.name.encode("utf-8")
                m.linkname.encode("utf-8")
            except UnicodeEncodeError as e:
                raise SourceError(repr(m.name), "tar member name or link target is not UTF-8") from e
            xattrs = _tar_xattrs(m, options)
            if m.isdir():
                # tarfile drops the trailing slash that tar writers (GNU tar, tarfile) put on
                # directory names and libarchive keeps; a pathname filter may match on it.
                yield _Entry(m.name + "/", _DIR, m.uid, m.gid, m.mode, "", b"", xattrs)
            elif m.issym():
                yield _Entry(m.name, _SYM, m.uid, m.gid, 0o777, m.linkname, b"", xattrs)
            elif m.islnk():
                yield _Entry(m.name, _LNK, m.uid, m.gid, m.mode, m.linkname, b"", xattrs)
            elif m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                data = f.read(m.size)
                if len(data) != m.size:
                    raise SourceError(m.name, "tar archive is truncated")
                yield _Entry(m.name, _REG, m.uid, m.gid, m.mode, "", data, xattrs)
            else:
                raise SourceError(m.name, "unsupported tar member type (device or fifo)")


def _cpio_entries(stream: BinaryIO, first: bytes) -> Iterator[_Entry]:
    try:
        for e in read_newc(stream, first=first):
            fmt = stat.S_IFMT(e.mode)
            if e.link_of is not None:
                yield _Entry(e.name, _LNK, e.uid, e.gid, e.mode, e.link_of, b"", ())
            elif fmt == stat.S_IFDIR:
                yield _Entry(e.name, _DIR, e.uid, e.gid, e.mode, "", b"", ())
            elif fmt == stat.S_IFLNK:
                yield _Entry(e.name, _SYM, e.uid, e.gid, 0o777, e.data.decode("utf-8", "surrogateescape"), b"", ())
            elif fmt == stat.S_IFREG:
                yield _Entry(e.name, _REG, e.uid, e.gid, e.mode, "", e.data, ())
            else:
                raise SourceError(e.name, "unsupported cpio member type (device, fifo or socket)")
    except FormatError as e:
        raise SourceError("<archive>", str(e)) from e


def _entries(stream: io.BufferedReader, options: CommitOptions) -> Iterator[_Entry]:
    """The archive's entries, whatever its format (sniffed from its first bytes)."""
    if stream.peek(6)[:6] in CPIO_MAGICS:
        return _cpio_entries(stream, b"")
    return _tar_entries(stream, options)


def write_archive(
    txn: Transaction,
    source: Path,
    into: MutableTree,
    options: CommitOptions,
    *,
    progress: ProgressFn | None = None,
) -> None:
    """Add the entries of an archive (``source``; ``-`` is standard input) to ``into``.

    Hardlinks reuse their target's object; ``options.path_rules`` (statoverride, skip list)
    apply to each entry's final path, after ``options.tar_pathname_filter``. With
    ``options.tar_autocreate_parents`` an archive that lists nothing still gets a root directory.

    Raises:
        SourceError: for an unreadable or corrupt archive, an unsafe path, a hardlink to a
            missing member or an unsupported member type.
    """
    name = os.fspath(source)
    try:
        stream = cast(io.BufferedReader, sys.stdin.buffer) if name == "-" else open(source, "rb")
    except OSError as e:
        raise SourceError(name, e.strerror or str(e)) from e
    try:
        _import(txn, _entries(stream, options), into, options, progress)
    except SourceError as e:
        if e.path == "<archive>":
            raise SourceError(name, str(e).removeprefix("<archive>: ")) from e
        raise
    except (EOFError, OSError) as e:
        raise SourceError(name, f"cannot read archive: {e}") from e
    finally:
        if name != "-":
            stream.close()
    if options.tar_autocreate_parents and into.meta is None:
        into.meta = txn.write_dirmeta(options.dir_meta(0, 0, 0o755, ()))


def _import(
    txn: Transaction,
    entries: Iterator[_Entry],
    into: MutableTree,
    options: CommitOptions,
    progress: ProgressFn | None,
) -> None:
    import tarfile

    rules = options.path_rules
    pathname_filter = options.tar_pathname_filter
    pending: list[tuple[MutableTree, str, Future[Checksum]]] = []
    count = nbytes = 0

    def final(member: str) -> str:
        rel = _relative(member)
        return pathname_filter.apply(rel) if pathname_filter is not None else rel

    def parent_of(parts: list[str], e: _Entry) -> MutableTree:
        node = into
        for i in range(len(parts) + 1):
            if node.meta is None:  # implied by this entry: 0755, owned as the entry
                node.meta = txn.write_dirmeta(options.dir_meta(e.uid, e.gid, 0o755, ()))
            if i < len(parts):
                node = node.ensure_dir(parts[i])
        return node

    with ThreadPoolExecutor(options.pool_size, thread_name_prefix="bootree-tar") as pool:
        try:
            for e in entries:
                parts = _split(final(e.name))
                mode = e.mode & 0o7777
                if rules is not None:
                    where = "/" + "/".join(parts)  # the path ostree's commit filter sees
                    if rules.skipped(where):
                        continue
                    mode = rules.mode(where, (stat.S_IFDIR if e.kind == _DIR else stat.S_IFREG) | mode) & 0o7777
                if e.kind == _DIR:
                    node = parent_of(parts[:-1], e).ensure_dir(parts[-1]) if parts else into
                    node.meta = txn.write_dirmeta(options.dir_meta(e.uid, e.gid, mode, e.xattrs))
                    continue
                if not parts:
                    raise SourceError(e.name, "tar member has an empty name")
                parent = parent_of(parts[:-1], e)
                leaf = parts[-1]
                if e.kind == _SYM:
                    header = options.file_header(e.uid, e.gid, stat.S_IFLNK | 0o777, e.linkname, e.xattrs)
                    parent.set_file(leaf, txn.write_file(header, None))
                elif e.kind == _LNK:
                    # The target is an earlier member; wait for its object if still in the pool.
                    csum = _resolve_pending(into, _split(final(e.linkname)), pending)
                    if csum is None:
                        raise SourceError(e.name, f"hardlink to missing member {e.linkname!r}")
                    parent.set_file(leaf, csum)
                else:
                    header = options.file_header(e.uid, e.gid, stat.S_IFREG | mode, "", e.xattrs)
                    fut = pool.submit(txn.write_file, header, e.data)
                    parent.set_file(leaf, Checksum(""))
                    pending.append((parent, leaf, fut))
                    nbytes += len(e.data)
                count += 1
                if progress is not None and count % 256 == 0:
                    progress(count, nbytes)
            for node, leaf, fut in pending:
                if node.files.get(leaf) == "":
                    node.files[leaf] = fut.result()
                else:
                    fut.result()
        except tarfile.TarError as err:
            raise SourceError("<archive>", f"cannot read tar archive: {err}") from err
        except BaseException:
            for _, _, fut in pending:
                fut.cancel()
            raise
    if progress is not None:
        progress(count, nbytes)


def _resolve_pending(
    root: MutableTree, parts: list[str], pending: list[tuple[MutableTree, str, Future[Checksum]]]
) -> Checksum | None:
    csum = root.find_file(parts)
    if csum is None:
        return None
    if csum:
        return csum
    # Still being written: find its future (search from the end; hardlinks follow their target).
    node = root
    for p in parts[:-1]:
        node = node.dirs[p]
    for pnode, pname, fut in reversed(pending):
        if pnode is node and pname == parts[-1]:
            result = fut.result()
            node.files[pname] = result
            return result
    return None
