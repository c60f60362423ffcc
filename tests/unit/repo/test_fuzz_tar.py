"""Fuzzing the tar input of ``commit --tree=tar=`` (issue 10 item 3).

Two generators: archives built member by member with hostile fields (``..``, absolute and
NUL-bearing names, links to nowhere, devices, huge or negative sizes, pax xattrs), and valid
archives with their bytes mutated (a header checksum recomputed half of the time so that the
damage reaches the members). A commit either succeeds, and then fscks clean (every dirtree
name a validated single component), or raises a typed ``bootree.errors`` exception; nothing else.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.errors import BootreeError
from bootree.repo import Repo, RepoMode
from bootree.repo.repo import TreeSource

N = int(os.environ.get("BOOTREE_FUZZ_EXAMPLES", "120")) // 2 or 1
FUZZ = settings(max_examples=N, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_NAMES = st.one_of(
    st.sampled_from(["a", "d/b", "d/", "./x", "../up", "/abs", "d/../../esc", "a\0b", "", ".", "..", "d//e",
                     "x" * 300, "d/" * 60 + "deep", "é/ü", "\udcff"]),
    st.text(min_size=1, max_size=20),
)
_TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                          tarfile.FIFOTYPE, tarfile.CONTTYPE, b"Z"])


@st.composite
def members(draw: st.DrawFn) -> bytes:
    buf = io.BytesIO()
    fmt = draw(st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]))
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for _ in range(draw(st.integers(1, 6))):
            name = draw(_NAMES)
            ti = tarfile.TarInfo(name)
            ti.type = draw(_TYPES)
            ti.mode = draw(st.integers(0, 0o7777))
            ti.uid, ti.gid = draw(st.integers(0, 2**21 - 1)), draw(st.integers(0, 2**21 - 1))
            ti.linkname = draw(_NAMES)
            if fmt == tarfile.PAX_FORMAT and draw(st.booleans()):
                ti.pax_headers = {f"SCHILY.xattr.{draw(st.sampled_from(['user.a', 'security.x', '', 'user.' + 'n' * 300]))}":
                                  draw(st.text(max_size=10))}
            data = draw(st.binary(max_size=64)) if ti.type in (tarfile.REGTYPE, tarfile.CONTTYPE) else b""
            ti.size = len(data)
            try:
                tf.addfile(ti, io.BytesIO(data) if data else None)
            except (ValueError, UnicodeError, tarfile.TarError):
                continue  # tarfile itself refuses to write this one
    return buf.getvalue()


def _valid() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in (("usr", tarfile.DIRTYPE, b""), ("usr/bin", tarfile.DIRTYPE, b""),
                                 ("usr/bin/sh", tarfile.REGTYPE, b"#!sh\n" * 20), ("bin", tarfile.SYMTYPE, b""),
                                 ("usr/bin/sh2", tarfile.LNKTYPE, b"")):
            ti = tarfile.TarInfo(name)
            ti.type, ti.size, ti.mode = kind, len(data), 0o755
            ti.linkname = {"bin": "usr/bin", "usr/bin/sh2": "usr/bin/sh"}.get(name, "")
            tf.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()


VALID = _valid()


@st.composite
def mutated_tar(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        # Recompute the checksum of the header block around the last edit, so tarfile accepts it.
        block = pos - pos % 512
        hdr = data[block:block + 512]
        hdr[148:156] = b" " * 8
        data[block + 148:block + 156] = b"%06o\0 " % sum(hdr)
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return bytes(data)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return Repo.init(tmp_path_factory.mktemp("fuzz") / "repo", mode=RepoMode.BARE_USER)


def _commit(repo: Repo, data: bytes) -> None:
    path = repo.path.parent / "in.tar"
    path.write_bytes(data)
    try:
        csum = repo.commit([TreeSource("tar", str(path))], branch="fuzz", subject="f")
    except BootreeError:
        return
    # fsck parses every dirtree, whose names must be single components (no "..", no "/").
    assert csum and repo.fsck().ok


@FUZZ
@given(members())
def test_hostile_members(repo: Repo, data: bytes) -> None:
    _commit(repo, data)


@FUZZ
@given(mutated_tar())
def test_mutated_archive(repo: Repo, data: bytes) -> None:
    _commit(repo, data)


def test_valid_archive_commits(repo: Repo, tmp_path: Path) -> None:
    (tmp_path / "ok.tar").write_bytes(VALID)
    csum = repo.commit([TreeSource("tar", str(tmp_path / "ok.tar"))], branch="ok", subject="ok")
    assert repo.fsck().ok and csum


def test_non_utf8_link_target_is_a_source_error(repo: Repo, tmp_path: Path) -> None:
    """Found by the fuzz pass: a symlink target that is not UTF-8 raised UnicodeEncodeError."""
    from bootree.errors import SourceError

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        ti = tarfile.TarInfo("link")
        ti.type, ti.linkname = tarfile.SYMTYPE, "\xff-target"
        tf.addfile(ti)
    (tmp_path / "bad.tar").write_bytes(buf.getvalue())
    with pytest.raises(SourceError, match="not UTF-8"):
        repo.commit([TreeSource("tar", str(tmp_path / "bad.tar"))], branch="bad", subject="bad")
