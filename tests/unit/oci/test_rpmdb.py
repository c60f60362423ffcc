"""The rpm database of a tree (``rpmdb.sqlite``) as the owner map of ``--max-layers`` chunking."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from commitgen import F, base_spec, write_commit

from bootree.errors import ImageError
from bootree.format.rpmheader import Tag, TagType, encode_header
from bootree.oci.chunking import KERNEL, UNOWNED, plan_chunks, read_package_db
from bootree.oci.rpmdb import read_rpmdb, read_rpmdb_bytes
from bootree.repo import Repo

DAY = 86400


def _header(name: str, files: list[str], changelog: int = 2) -> bytes:
    dirs = sorted({f.rsplit("/", 1)[0] + "/" for f in files})
    return encode_header({
        Tag.NAME: (TagType.STRING, (name,)), Tag.VERSION: (TagType.STRING, ("1.0",)),
        Tag.RELEASE: (TagType.STRING, ("1.fc40",)), Tag.BUILDTIME: (TagType.INT32, (1700000000,)),
        Tag.DIRNAMES: (TagType.STRING_ARRAY, tuple(dirs)),
        Tag.BASENAMES: (TagType.STRING_ARRAY, tuple(f.rsplit("/", 1)[1] for f in files)),
        Tag.DIRINDEXES: (TagType.INT32, tuple(dirs.index(f.rsplit("/", 1)[0] + "/") for f in files)),
        Tag.FILESIZES: (TagType.INT32, tuple(10 for _ in files)),
        Tag.CHANGELOGTIME: (TagType.INT32, tuple(1700000000 - i * 60 * DAY for i in range(changelog))),
    })


def _sqlite(tmp_path: Path, headers: list[bytes], *, wal: bool = False) -> bytes:
    path = tmp_path / "rpmdb.sqlite"
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    con.execute("CREATE TABLE Name (key TEXT NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL)")
    con.executemany("INSERT INTO Packages (blob) VALUES (?)", [(h,) for h in headers])
    con.commit()
    if wal:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return path.read_bytes()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo")


def _distro(tmp_path: Path, n: int, *, volatile: tuple[str, ...] = (), where: str = "usr/lib/sysimage/rpm",
            wal: bool = False) -> dict[str, F]:
    spec = {**base_spec(), "bin": F(target="usr/bin"), "usr/share/local/notes": F(b"mine")}
    headers = [_header("gpg-pubkey", [])]
    for i in range(n):
        pkg = f"pkg{i:02d}"
        spec[f"usr/bin/{pkg}"] = F(pkg.encode() * (50 + 30 * i), 0o755)
        spec[f"usr/etc/{pkg}.conf"] = F(pkg.encode())
        headers.append(_header(pkg, [f"/usr/bin/{pkg}", f"/etc/{pkg}.conf"], 8 if pkg in volatile else 2))
    spec[f"{where}/rpmdb.sqlite"] = F(_sqlite(tmp_path, headers, wal=wal))
    return spec  # type: ignore[return-value]


@pytest.mark.parametrize(("where", "wal"), [("usr/lib/sysimage/rpm", True), ("usr/share/rpm", False),
                                            ("var/lib/rpm", False)])
def test_rpm_packages_own_their_files(repo: Repo, tmp_path: Path, where: str, wal: bool) -> None:
    csum = write_commit(repo, _distro(tmp_path, 3, where=where, wal=wal))
    db = read_package_db(repo, csum)
    assert db is not None and db.source == f"/{where}/rpmdb.sqlite"
    assert set(db.files) == {"pkg00", "pkg01", "pkg02"}, "gpg-pubkey pseudo-packages are left out"
    plan = plan_chunks(repo, csum, 10, package_db=db)
    by_name = {c.name: c for c in plan.chunks}
    assert set(by_name) == {"pkg00", "pkg01", "pkg02", KERNEL, UNOWNED}
    assert {p for _, ps in by_name["pkg01"].objects.values() for p in ps} == {"usr/bin/pkg01", "usr/etc/pkg01.conf"}
    assert f"{where}/rpmdb.sqlite" in {p for _, ps in by_name[UNOWNED].objects.values() for p in ps}


def test_changelog_times_make_packages_volatile(repo: Repo, tmp_path: Path) -> None:
    csum = write_commit(repo, _distro(tmp_path, 24, volatile=("pkg03", "pkg07")))
    db = read_package_db(repo, csum)
    assert db is not None and db.changes["pkg03"] == 8 and db.changes["pkg00"] == 2
    plan = plan_chunks(repo, csum, 12, package_db=db)
    vol = [c for c in plan.chunks if c.name.startswith("volatile-")]
    assert vol and {"pkg03", "pkg07"} <= {p for c in vol for p in c.components}
    assert not {"pkg03", "pkg07"} & {p for c in plan.chunks if c.name.startswith("stable-") for p in c.components}


def test_bad_databases(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not an SQLite database"):
        read_rpmdb_bytes(b"\0" * 200, "/x")
    con = sqlite3.connect(tmp_path / "empty.sqlite")
    con.execute("CREATE TABLE Other (a)")
    con.commit()
    con.close()
    with pytest.raises(ImageError, match="no such table: Packages"):
        read_rpmdb_bytes((tmp_path / "empty.sqlite").read_bytes(), "/x")
    with pytest.raises(ImageError, match="package 1: rpm header"):
        read_rpmdb_bytes(_sqlite(tmp_path, [b"\0\0\0\x05"]), "/x")
    # No database at all: no owners (the chunking falls back to directories).
    csum = write_commit(repo, {**base_spec()})
    assert read_rpmdb(repo, csum) is None and read_package_db(repo, csum) is None
