"""The tar reader against :mod:`tarfile`: same records for what tarfile writes, typed errors for the rest."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bootree.errors import TarFormatError
from bootree.format.tar import TarEntry, TarReader

Record = tuple[object, ...]


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _ours(data: bytes, chunk: int = 1 << 20, via_chunks: bool = False) -> list[Record]:
    it = _chunks(data, chunk)
    r = TarReader(lambda: next(it, b""))
    out: list[Record] = []
    for e in r:
        body = b"".join(bytes(c) for c in r.body_chunks(7)) if via_chunks else r.read_body()
        out.append((*_record(e), body))
    return out


def _record(e: TarEntry) -> Record:
    return (e.name, e.type, e.mode, e.uid, e.gid, e.size, e.mtime, e.linkname, e.devmajor, e.devminor,
            tuple(sorted(e.xattrs)))


def _theirs(data: bytes) -> list[Record]:
    out: list[Record] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tf:
        for m in tf:
            xattrs = tuple(sorted((k[len("SCHILY.xattr."):].encode("utf-8", "surrogateescape"),
                                   v.encode("utf-8", "surrogateescape"))
                                  for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")))
            f = tf.extractfile(m) if m.isreg() else None
            body = f.read() if f is not None else b""
            typ = m.type if m.type != tarfile.AREGTYPE else tarfile.REGTYPE
            out.append((m.name, typ, m.mode, m.uid, m.gid, m.size, int(m.mtime), m.linkname, m.devmajor,
                        m.devminor, xattrs, body))
    return out


_segment = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=40)
_raw_segment = st.binary(min_size=1, max_size=20).filter(lambda b: b"/" not in b and b"\0" not in b).map(
    lambda b: b.decode("utf-8", "surrogateescape"))
_name = st.lists(st.one_of(_segment, _raw_segment), min_size=1, max_size=6).map("/".join)
_member = st.fixed_dictionaries({
    "name": _name,
    "kind": st.sampled_from(["reg", "dir", "sym", "lnk", "chr", "fifo"]),
    "mode": st.integers(0, 0o7777),
    "uid": st.one_of(st.integers(0, 65535), st.integers(0, 1 << 40)),
    "gid": st.integers(0, 1 << 30),
    "mtime": st.integers(-(1 << 34), 1 << 34),
    "link": _name,
    "data": st.binary(max_size=3000),
    "xattrs": st.dictionaries(st.sampled_from(["user.a", "security.capability", "trusted.x", "user.ü"]),
                              st.binary(max_size=60), max_size=3),
})


def _write(members: list[dict[str, object]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
        for m in members:
            ti = tarfile.TarInfo(str(m["name"]))
            ti.mode, ti.uid, ti.gid, ti.mtime = m["mode"], m["uid"], m["gid"], m["mtime"]  # type: ignore[assignment]
            kind = m["kind"]
            data = b""
            if kind == "reg":
                data = m["data"]  # type: ignore[assignment]
                ti.size = len(data)
            else:
                ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE,
                           "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[str(kind)]
                ti.linkname = str(m["link"]) if kind in ("sym", "lnk") else ""
                if kind == "chr":
                    ti.devmajor, ti.devminor = 4, 64
            if fmt == tarfile.PAX_FORMAT:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                                  for k, v in m["xattrs"].items()}  # type: ignore[attr-defined]
            try:
                tf.addfile(ti, io.BytesIO(data) if kind == "reg" else None)
            except ValueError:  # the format cannot hold it (ustar: a long name, a large number)
                assume(False)
    return buf.getvalue()


_formats = st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(_member, min_size=1, max_size=6), _formats, st.integers(1, 4000), st.booleans())
def test_same_records_as_tarfile(members: list[dict[str, object]], fmt: int, chunk: int, via_chunks: bool) -> None:
    data = _write(members, fmt)
    assert _ours(data, chunk, via_chunks) == _theirs(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(_member, min_size=1, max_size=4), _formats, st.data())
def test_a_mutated_header_block_is_an_error_or_the_same_records(members: list[dict[str, object]], fmt: int,
                                                                 data: st.DataObject) -> None:
    raw = _write(members, fmt)
    want = _ours(raw)
    # Header blocks: the ones tarfile reads a header from (each member's, and extended headers').
    starts = [0]
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        starts = [m.offset for m in tf] + [m.offset_data - 512 for m in tf]
    block = data.draw(st.sampled_from(starts))
    pos = block + data.draw(st.integers(0, 511))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
    bad = raw[:pos] + bytes([new]) + raw[pos + 1 :]
    try:
        got = _ours(bad)
    except TarFormatError:
        return
    assert got == want


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(_member, min_size=1, max_size=4), _formats, st.data())
def test_any_mutation_or_cut_is_an_error_or_records_never_a_crash(members: list[dict[str, object]], fmt: int,
                                                                   data: st.DataObject) -> None:
    raw = _write(members, fmt)
    want = _ours(raw)
    cut = data.draw(st.integers(0, len(raw) - 1))
    if data.draw(st.booleans()):
        try:
            got = _ours(raw[:cut])
        except TarFormatError:
            return
        # Only a cut between two members (or after the end marker) reads as an archive: a prefix.
        assert got == want[: len(got)] and (cut % 512 == 0 or got == want)
    else:
        bad = bytearray(raw)
        bad[cut] ^= data.draw(st.integers(1, 255))
        try:
            _ours(bytes(bad))
        except TarFormatError:
            pass


def _header(name: bytes = b"f", size: int = 0, typ: bytes = b"0", magic: bytes = b"ustar\x0000",
            mode: bytes = b"0000644\0", uid: bytes = b"0000000\0", signed: bool = False) -> bytes:
    h = bytearray(512)
    h[0 : len(name)] = name
    h[100:108], h[108:116], h[116:124] = mode, uid, b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"00000000000\0"
    h[156:157] = typ
    h[257:265] = magic
    h[148:156] = b" " * 8
    s = sum((b - 256 if b > 127 else b) for b in h) if signed else sum(h)
    h[148:156] = b"%06o\0 " % s
    return bytes(h)


def test_base256_numbers_and_signed_checksums() -> None:
    uid = bytes([0x80]) + (1 << 40).to_bytes(7, "big")
    data = _header(name="é".encode("latin-1"), uid=uid, signed=True) + bytes(1024)
    [e] = list(TarReader(iter([data, b""]).__next__))
    assert e.uid == 1 << 40 and e.name == "\udce9"


def test_v7_directory_and_global_pax_headers() -> None:
    gpax = b"20 SCHILY.xattr.u=v\n"
    data = (_header(b"././@PaxHeader", len(gpax), b"g") + gpax.ljust(512, b"\0")
            + _header(b"d/", typ=b"\0", magic=b"\0" * 8) + _header(b"f") + bytes(1024))
    got = [(e.name, e.type, e.xattrs) for e in TarReader(iter([data, b""]).__next__)]
    assert got == [("d", b"5", ((b"u", b"v"),)), ("f", b"0", ((b"u", b"v"),))]


@pytest.mark.parametrize(("data", "why"), [
    (_header(b"s", typ=b"S") + bytes(1024), "sparse"),
    (_header(b"x", 22, b"x") + b"22 GNU.sparse.major=1\n".ljust(512, b"\0") + _header(b"f") + bytes(1024), "sparse"),
    (_header(b"x", 17, b"x") + b"99 path=abcdefg\n".ljust(512, b"\0") + _header(b"f"), "length"),
    (_header(b"x", 7, b"x") + b"7 path\n".ljust(512, b"\0") + _header(b"f"), "key=value"),
    (_header(b"x", 17 << 20, b"L"), "extended header"),
    (_header(b"f", 10, mode=b"00006_4\0"), "octal"),
    (_header(b"f", 10)[:300], "truncated header"),
    (_header(b"f", 1000) + b"x" * 700, "truncated"),
    (_header(b"x", 11, b"x") + b"11 size=-1\n".ljust(512, b"\0") + _header(b"f"), "negative"),
    (_header(b"x", 11, b"x") + b"11 uid=1a1\n".ljust(512, b"\0") + _header(b"f"), "not a number"),
    (_header(b"x", 8, b"x") + b"6 a=b\n\0\0".ljust(512, b"\0"), "extended header"),
    (_header(b"f")[:148] + b"0000000\0" + _header(b"f")[156:], "checksum"),
])
def test_malformed_archives_raise_the_typed_error(data: bytes, why: str) -> None:
    with pytest.raises(TarFormatError, match=why):
        r = TarReader(iter([data, b""]).__next__)
        for _ in r:
            r.read_body()


def test_large_bodies_come_as_views_of_the_chunks() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("big")
        ti.size = len(body)
        tf.addfile(ti, io.BytesIO(body))
    chunks = list(_chunks(buf.getvalue(), 300_000))
    it = iter(chunks)
    r = TarReader(lambda: next(it, b""))
    [(e, views)] = [(e, list(r.body_chunks(1 << 20))) for e in r]
    assert e.size == len(body) and b"".join(views) == body
    assert all(isinstance(v, memoryview) and len(v) <= 300_000 for v in views)
