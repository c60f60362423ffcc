"""Read the rpm database of a commit's tree: which package owns which file.

Layer: oci (the I/O around :mod:`bootree.format.rpmheader`). Why: ``container encapsulate
--max-layers`` groups content by owning package (:mod:`bootree.oci.chunking`); images of
Fedora, CentOS, RHEL and AutoSD carry an rpm database instead of dpkg's file lists.

rpm ≥ 4.16 keeps its database in SQLite, ``rpmdb.sqlite``: table ``Packages (hnum INTEGER
PRIMARY KEY, blob BLOB)``, one header blob per installed package (the other tables are indexes
rebuilt from the headers). Where it lives: ``usr/lib/sysimage/rpm`` (rpm ≥ 4.17's default and
rpm-ostree's), ``usr/share/rpm`` (older rpm-ostree trees), ``var/lib/rpm``. The database file
is read from the repository into memory (:meth:`sqlite3.Connection.deserialize`, nothing is
written to disk) with its header switched from WAL to rollback-journal mode so an in-memory
copy can be opened; a database with a live ``-wal`` file alongside (not checkpointed) is read
without the WAL's pages, which a committed image should not have. The BerkeleyDB
(``Packages``) and ndb (``Packages.db``) backends of older rpm are not read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from bootree.errors import BootreeError, FormatError, ImageError
from bootree.format.checksum import Checksum
from bootree.format.rpmheader import Package, package_of, parse_header
from bootree.repo import Repo
from bootree.repo.reader import EntryKind

__all__ = ["RPMDB_PATHS", "RpmDb", "find_rpmdb", "read_rpmdb", "read_rpmdb_bytes"]

RPMDB_PATHS = ("usr/lib/sysimage/rpm/rpmdb.sqlite", "usr/share/rpm/rpmdb.sqlite", "var/lib/rpm/rpmdb.sqlite")
MAX_RPMDB = 1 << 30
_SQLITE_MAGIC = b"SQLite format 3\0"


@dataclass(frozen=True, slots=True)
class RpmDb:
    """The installed packages of a tree, and where their database was."""

    packages: tuple[Package, ...]
    source: str


def _headers(data: bytes, where: str) -> Iterator[bytes]:
    if not data.startswith(_SQLITE_MAGIC) or len(data) < 100:
        raise ImageError(f"{where}: not an SQLite database")
    buf = bytearray(data)
    buf[18:20] = b"\x01\x01"  # WAL (2) → rollback journal (1): an in-memory copy cannot use a WAL
    con = sqlite3.connect(":memory:")
    try:
        con.deserialize(bytes(buf))
        rows = con.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
    except sqlite3.Error as e:
        raise ImageError(f"{where}: cannot read the rpm database: {e}") from None
    finally:
        con.close()
    for hnum, blob in rows:
        if not isinstance(blob, bytes):
            raise ImageError(f"{where}: Packages row {hnum} holds no header blob")
        yield blob


def read_rpmdb_bytes(data: bytes, where: str) -> RpmDb:
    """The packages of an ``rpmdb.sqlite`` file's bytes (``gpg-pubkey`` pseudo-packages left out).

    Raises:
        ImageError: not an SQLite database, no Packages table, a header that does not parse.
    """
    out = []
    for n, blob in enumerate(_headers(data, where)):
        try:
            pkg = package_of(parse_header(blob))
        except FormatError as e:
            raise ImageError(f"{where}: package {n + 1}: {e}") from None
        if pkg.name != "gpg-pubkey":
            out.append(pkg)
    return RpmDb(tuple(out), where)


def find_rpmdb(repo: Repo, commit: Checksum) -> tuple[str, Checksum] | None:
    """The path and content object of the commit's ``rpmdb.sqlite``, or ``None``."""
    for path in RPMDB_PATHS:
        try:
            entry = repo.reader.lookup(repo.read_commit(commit), "/" + path)
        except BootreeError:
            continue
        if entry is not None and entry.kind is EntryKind.FILE:
            return path, entry.checksum
    return None


def read_rpmdb(repo: Repo, commit: Checksum) -> RpmDb | None:
    """The rpm database of ``commit``'s tree, or ``None`` when it has none.

    Raises:
        ImageError: a database that is too large or does not read (see :func:`read_rpmdb_bytes`).
    """
    found = find_rpmdb(repo, commit)
    if found is None:
        return None
    path, csum = found
    if repo.content_size(csum) > MAX_RPMDB:
        raise ImageError(f"/{path}: rpm database larger than {MAX_RPMDB} bytes")
    return read_rpmdb_bytes(repo.load_file(csum)[1], "/" + path)
