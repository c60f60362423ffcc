"""The zstd:chunked codec: footer, TOC, tar-split, annotations (property tests), and the writer:
a tar streamed through :class:`ChunkedSink` is a valid zstd stream of the same tar, each file
its own frame, whose TOC and tar-split describe it exactly."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import LayerError
from bootree.oci.partial import coalesce
from bootree.oci.zchunked import (
    FILE,
    FOOTER_SIZE,
    MANIFEST_CHECKSUM_KEY,
    MANIFEST_POSITION_KEY,
    SEGMENT,
    TARSPLIT_POSITION_KEY,
    Crc64,
    Footer,
    TarSplitEntry,
    Toc,
    TocEntry,
    decode_tarsplit,
    decode_toc,
    encode_tarsplit_entry,
    encode_toc,
    layout_from_annotations,
    skippable_frame,
    tar_offsets,
)
from bootree.oci.zchunkwrite import ChunkedSink

u64 = st.integers(0, 2**64 - 1)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@given(u64, u64, u64, u64, u64, u64)
def test_footer_roundtrip(a: int, b: int, c: int, d: int, e: int, f: int) -> None:
    footer = Footer(a, b, c, d, e, f)
    data = footer.encode()
    assert len(data) == FOOTER_SIZE and data.endswith(b"GNUlInUx")
    assert Footer.decode(data) == footer


def test_footer_layout_is_containers_storage() -> None:
    data = Footer(1, 2, 3, 4, 5, 6).encode()
    # offset, length, uncompressed length, manifest type (1), tar-split offset, length, uncompressed.
    assert data[:56] == b"".join(n.to_bytes(8, "little") for n in (1, 2, 3, 1, 4, 5, 6))
    with pytest.raises(LayerError):
        Footer.decode(data[:-1] + b"y")
    frame = skippable_frame(data)
    assert frame[:4] == b"\x50\x2a\x4d\x18" and frame[4:8] == (64).to_bytes(4, "little")


entries = st.builds(
    TocEntry,
    type=st.sampled_from(["reg", "dir", "symlink", "hardlink", "char", "block", "fifo"]),
    name=names, link_name=st.one_of(st.just(""), names), mode=st.integers(0, 0o7777),
    size=st.integers(0, 2**40), uid=st.integers(0, 2**31), gid=st.integers(0, 2**31),
    modtime=st.one_of(st.none(), st.just("1970-01-01T00:00:00Z")),
    xattrs=st.dictionaries(st.text(min_size=1, max_size=10), st.binary(max_size=8).map(
        lambda b: base64.b64encode(b).decode())),
    digest=st.one_of(st.just(""), st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())),
    offset=st.integers(0, 2**40),
).map(lambda e: TocEntry(e.type, e.name, e.link_name, e.mode, e.size, e.uid, e.gid, e.modtime, 0, 0, e.xattrs,
                         e.digest, e.offset, e.offset + 7 if e.offset else 0))


@given(st.lists(entries, max_size=8), st.one_of(st.just(""), st.just("sha256:" + "ab" * 32)))
def test_toc_roundtrip(items: list[TocEntry], tsd: str) -> None:
    toc = Toc(tuple(items), tsd)
    assert decode_toc(encode_toc(toc)) == toc


def test_toc_field_names() -> None:
    e = TocEntry("reg", "usr/bin/x", "", 0o755, 3, 1, 2, "1970-01-01T00:00:00Z", 0, 0, {"user.a": "dg=="},
                 "sha256:" + "00" * 32, 10, 20)
    assert encode_toc(Toc((e,), "sha256:" + "11" * 32)) == (
        b'{"version":1,"entries":[{"type":"reg","name":"usr/bin/x","mode":493,"size":3,"uid":1,"gid":2,'
        b'"modtime":"1970-01-01T00:00:00Z","xattrs":{"user.a":"dg=="},"digest":"sha256:' + b"00" * 32
        + b'","offset":10,"endOffset":20}],"tarSplitDigest":"sha256:' + b"11" * 32 + b'"}')


@pytest.mark.parametrize("doc", [b"[]", b"{", b'{"version":2,"entries":[]}', b'{"version":1,"entries":[1]}',
                                 b'{"version":1,"entries":[{"type":"weird","name":"x"}]}',
                                 b'{"version":1,"entries":[{"type":"reg","name":"x","size":-1}]}',
                                 b'{"version":1,"entries":[{"type":"reg","name":"x","digest":"md5:1"}]}',
                                 b'{"version":1,"entries":[{"type":"reg","name":"x","offset":9,"endOffset":3}]}'])
def test_toc_rejects_malformed(doc: bytes) -> None:
    with pytest.raises(LayerError):
        decode_toc(doc)


records = st.lists(st.one_of(
    st.builds(lambda p: (SEGMENT, p, b"", 0), st.binary(min_size=1, max_size=600)),
    st.builds(lambda n, s, c: (FILE, c if s else b"", n, s), st.binary(min_size=1, max_size=30),
              st.integers(0, 10**12), st.binary(min_size=8, max_size=8))), max_size=10)


@given(records)
def test_tarsplit_roundtrip(recs: list[tuple[int, bytes, bytes, int]]) -> None:
    items = [TarSplitEntry(t, i, p, n, s) for i, (t, p, n, s) in enumerate(recs)]
    data = b"".join(encode_tarsplit_entry(e) for e in items)
    assert list(decode_tarsplit(data.splitlines(keepends=True))) == items


def test_tarsplit_format_and_order() -> None:
    line = encode_tarsplit_entry(TarSplitEntry(FILE, 3, b"\x00" * 8, b"a/b", 5))
    assert line == b'{"type":1,"name":"a/b","size":5,"payload":"AAAAAAAAAAA=","position":3}\n'
    assert b'"name_raw"' in encode_tarsplit_entry(TarSplitEntry(FILE, 0, b"", b"\xff", 0))
    with pytest.raises(LayerError):
        list(decode_tarsplit([encode_tarsplit_entry(TarSplitEntry(SEGMENT, 1, b"x"))]))


def test_crc64_is_go_iso() -> None:
    c = Crc64()
    c.update(b"1234")
    c.update(b"56789")
    assert c.digest() == (0xB90956C775A41001).to_bytes(8, "big")


def test_layout_from_annotations_bounds() -> None:
    good = {MANIFEST_CHECKSUM_KEY: "sha256:" + "0" * 64, MANIFEST_POSITION_KEY: "100:20:50:1",
            TARSPLIT_POSITION_KEY: "128:10:40"}
    lay = layout_from_annotations(good, 200)
    assert lay is not None and (lay.toc_offset, lay.tarsplit_length) == (100, 10)
    assert layout_from_annotations(good, 130) is None, "beyond the blob"
    assert layout_from_annotations({**good, MANIFEST_POSITION_KEY: "100:20:50:2"}, 200) is None
    assert layout_from_annotations({**good, TARSPLIT_POSITION_KEY: "x"}, 200) is None
    assert layout_from_annotations({}, 200) is None


# --- the writer ------------------------------------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("usr")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(d)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.uid = len(data), 0o644, 7
            if name.endswith("x"):
                ti.pax_headers = {"SCHILY.xattr.user.k": "v\x01"}
            tf.addfile(ti, io.BytesIO(data))
        ln = tarfile.TarInfo("usr/link")
        ln.type, ln.linkname = tarfile.LNKTYPE, next(iter(files), "usr")
        tf.addfile(ln)
        sl = tarfile.TarInfo("usr/" + "long/" * 30 + "sym")
        sl.type, sl.linkname = tarfile.SYMTYPE, "../" * 3
        tf.addfile(sl)
    return buf.getvalue()


def _chunked(tmp_path: Path, tar: bytes, step: int) -> tuple[bytes, dict[str, str], str]:
    sink = ChunkedSink(tmp_path)
    for i in range(0, len(tar), step):
        sink.write(tar[i:i + step])
    blob = sink.finish()
    return blob.path.read_bytes(), blob.annotations, blob.diff_id


file_maps = st.dictionaries(st.text("abcx", min_size=1, max_size=6).map(lambda s: "usr/" + s),
                            st.binary(max_size=3000), max_size=6)


@settings(max_examples=15, deadline=None)
@given(file_maps, st.sampled_from([1, 511, 4096, 1 << 20]))
def test_writer_layout(tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes], step: int) -> None:
    tmp = tmp_path_factory.mktemp("zc")
    tar = _tar(files)
    data, ann, diff_id = _chunked(tmp, tar, step)
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    # A valid zstd stream of the very tar (the skippable frames are skipped).
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as r:
        assert r.read() == tar
    footer = Footer.decode(data[-FOOTER_SIZE:])
    lay = layout_from_annotations(ann, len(data))
    assert lay is not None and (lay.toc_offset, lay.tarsplit_offset) == (footer.toc_offset, footer.tarsplit_offset)
    toc_c = data[lay.toc_offset:lay.toc_offset + lay.toc_length]
    lay.check_toc(toc_c)
    toc = decode_toc(zstandard.ZstdDecompressor().decompress(toc_c))
    regs = {e.name: e for e in toc.entries if e.type == "reg" and e.size}
    assert set(regs) == {n for n, d in files.items() if d}
    for name, e in regs.items():
        frame = data[e.offset:e.end_offset]
        assert zstandard.ZstdDecompressor().decompressobj().decompress(frame) == files[name]
        assert e.digest == "sha256:" + hashlib.sha256(files[name]).hexdigest()
        assert (e.xattrs == {"user.k": base64.b64encode(b"v\x01").decode()}) == name.endswith("x")
    assert {e.type for e in toc.entries} >= {"dir", "hardlink", "symlink"}
    assert any(e.name.endswith("/sym") and len(e.name) > 100 for e in toc.entries), "PAX path"
    ts_c = data[lay.tarsplit_offset:lay.tarsplit_offset + lay.tarsplit_length]
    assert toc.tar_split_digest == "sha256:" + hashlib.sha256(ts_c).hexdigest()
    ts = zstandard.ZstdDecompressor().stream_reader(ts_c, read_across_frames=True).read()
    rebuilt = bytearray()
    for rec, off in tar_offsets(decode_tarsplit(ts.splitlines(keepends=True))):
        assert off == len(rebuilt)
        if rec.type == SEGMENT:
            rebuilt += rec.payload
        elif rec.size:
            content = files[rec.name.decode()]
            crc = Crc64()
            crc.update(content)
            assert rec.payload == crc.digest()
            rebuilt += content
    assert bytes(rebuilt) == tar


def test_writer_is_reproducible(tmp_path: Path) -> None:
    tar = _tar({"usr/a": b"a" * 5000, "usr/bx": b"b"})
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    assert _chunked(tmp_path / "1", tar, 4096) == _chunked(tmp_path / "2", tar, 777)


def test_coalesce_joins_close_frames() -> None:
    from bootree.oci.partial import _File

    fs = [_File(str(i), 1, "", o, e, 0) for i, (o, e) in enumerate([(0, 10), (12, 20), (9000, 9100), (9100, 9200)])]
    rs = coalesce(fs, gap=100)
    assert [(r.start, r.end, len(r.files)) for r in rs] == [(0, 20, 2), (9000, 9200, 2)]
    assert len(coalesce(fs, gap=0)) == 3
