"""Tar headers derived from a zstd:chunked TOC: for any tar bootree's writer makes (its
ustar/PAX rule, xattrs, long and non-ASCII names, links, devices, empty files), the records
:func:`synth_tarsplit` derives from the layer's TOC rebuild the very tar the tar-split does."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import cast

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.oci.tarexport import OstreeTarWriter
from bootree.oci.zchunked import (
    SEGMENT,
    TAR_HEADERS_BOOTREE,
    TAR_HEADERS_KEY,
    TocEntry,
    decode_tarsplit,
    decode_toc,
    layout_from_annotations,
)
from bootree.oci.zchunktar import synth_tarsplit
from bootree.oci.zchunkwrite import ChunkedSink
from bootree.repo import Repo

_KINDS = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]
_name = st.text(st.sampled_from("ab/é_-.x"), min_size=1, max_size=12).map(lambda s: "usr/" + s.strip("/"))
_long = st.integers(0, 3).map(lambda n: "usr/" + "long-directory-name/" * (n * 4) + "f")
_entry = st.tuples(st.one_of(_name, _long), st.sampled_from(_KINDS), st.binary(max_size=1200),
                   st.sampled_from([0, 7, 0o7777777 + 1]), st.sampled_from([0o644, 0o4755, 0o1777]),
                   st.one_of(st.just(""), _name, _long),
                   st.dictionaries(st.sampled_from(["user.a", "security.selinux", "user.é"]),
                                   st.binary(max_size=20), max_size=2))


def _layer(tmp: Path, entries: list[tuple[str, bytes, bytes, int, int, str, dict[str, bytes]]]) -> bytes:
    """The entries through bootree's own writer rule (OstreeTarWriter._add) into a ChunkedSink."""
    sink = ChunkedSink(tmp, level=1)
    w = OstreeTarWriter(cast(Repo, None), cast(io.RawIOBase, sink))
    seen: set[str] = set()
    for name, kind, data, uid, mode, link, xattrs in entries:
        if name in seen:
            continue
        seen.add(name)
        reg = kind == tarfile.REGTYPE
        ti = OstreeTarWriter._info(name, kind, uid=uid, gid=uid, mode=mode, size=len(data) if reg else 0,
                                   link=link if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else "",
                                   xattrs=tuple((k.encode(), v) for k, v in xattrs.items()))
        if kind == tarfile.CHRTYPE:
            ti.devmajor, ti.devminor = 1, 3
        w._add(ti, io.BytesIO(data) if reg else None)
    w.close()
    blob = sink.finish()
    assert blob.annotations[TAR_HEADERS_KEY] == TAR_HEADERS_BOOTREE
    return blob.path.read_bytes()


def _flat(records: object) -> list[bytes | tuple[bytes, int]]:
    """Records as alternating raw-byte runs and (name, size) files, segment boundaries ignored."""
    out: list[bytes | tuple[bytes, int]] = []
    seg = bytearray()
    for r in records:  # type: ignore[attr-defined]
        if r.type == SEGMENT:
            seg += r.payload
        elif r.size:
            out += [bytes(seg), (r.name, r.size)]
            seg.clear()
    return [*out, bytes(seg)]


def _toc_and_tarsplit(data: bytes) -> tuple[tuple[TocEntry, ...], bytes]:
    lay = layout_from_annotations(
        {k: v for k, v in _annotations(data).items()}, len(data))
    assert lay is not None
    dz = zstandard.ZstdDecompressor()
    toc = decode_toc(dz.decompress(data[lay.toc_offset:lay.toc_offset + lay.toc_length]))
    ts = dz.stream_reader(data[lay.tarsplit_offset:lay.tarsplit_offset + lay.tarsplit_length],
                          read_across_frames=True).read()
    return toc.entries, ts


def _annotations(data: bytes) -> dict[str, str]:
    from bootree.oci.zchunked import FOOTER_SIZE, Footer

    return Footer.decode(data[-FOOTER_SIZE:]).annotations("sha256:" + "0" * 64)


@settings(max_examples=25, deadline=None)
@given(st.lists(_entry, max_size=8))
def test_derived_headers_equal_the_tarsplit(tmp_path_factory: pytest.TempPathFactory,
                                            entries: list[tuple[str, bytes, bytes, int, int, str,
                                                                dict[str, bytes]]]) -> None:
    data = _layer(tmp_path_factory.mktemp("zt"), entries)
    toc, ts = _toc_and_tarsplit(data)
    derived = synth_tarsplit(toc)
    assert derived is not None
    assert _flat(derived) == _flat(decode_tarsplit(ts.splitlines(keepends=True)))


def test_entries_outside_the_writer_rules_are_not_derived() -> None:
    assert synth_tarsplit([TocEntry("chunk", "usr/a", size=3)]) is None
    assert synth_tarsplit([TocEntry("reg", "usr/a", modtime="yesterday")]) is None
    assert synth_tarsplit([TocEntry("reg", "usr/a", xattrs={"user.a": "not base64!"})]) is None
    assert synth_tarsplit([]) is not None
