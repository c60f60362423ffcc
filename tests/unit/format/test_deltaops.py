"""Delta operation streams and bsdiff patches: round trips, checks, mutated input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import DeltaFormatError
from bootree.format.deltaops import (
    Bspatch,
    Close,
    Open,
    OpWriter,
    SetReadSource,
    Splice,
    UnsetReadSource,
    Write,
    apply_bsdiff,
    decode_operations,
    decode_varint,
    encode_bsdiff,
    encode_varint,
)
from bootree.format.objects import ObjectType

M = (ObjectType.DIR_META, "a" * 64)
F = (ObjectType.FILE, "b" * 64)


@given(st.integers(0, (1 << 64) - 1))
def test_varint_round_trip(v: int) -> None:
    enc = encode_varint(v)
    assert len(enc) <= 10 and decode_varint(enc + b"\x00", 0) == (v, len(enc))


def test_varint_known_bytes_and_limits() -> None:
    assert encode_varint(0) == b"\x00" and encode_varint(300) == b"\xac\x02"
    for bad in (b"\x80", b"\xff" * 11, b"\xff" * 9 + b"\x7f"):
        with pytest.raises(DeltaFormatError):
            decode_varint(bad, 0)
    with pytest.raises(DeltaFormatError):
        encode_varint(-1)


def _ostree_rollsum_stream() -> bytes:
    """The stream of delta-vectors' rollsum part: S, o r w w R w c."""
    w = OpWriter()
    w.splice_meta(237, 0)
    w.open(0, 0, 28903)
    w.set_read_source(237)
    w.write(5085, 0)
    w.write(4050, 5085)
    w.unset_read_source()
    w.write(19768, 269)
    w.close()
    return w.to_bytes()


def test_decode_matches_what_was_written() -> None:
    ops = decode_operations(_ostree_rollsum_stream(), [M, F], payload_size=20037, n_modes=1, n_xattrs=1)
    assert ops == [
        Splice(0, 237, 0),
        Open(1, 0, 0, 28903),
        SetReadSource(237),
        Write(5085, 0, True),
        Write(4050, 5085, True),
        UnsetReadSource(),
        Write(19768, 269, False),
        Close(1),
    ]


def test_bsdiff_emission_order_is_accepted() -> None:
    # ostree emits r o B c R: the read source outlives the close's implicit unset.
    w = OpWriter()
    w.set_read_source(0)
    w.open(0, 0, 10)
    w.bspatch(32, 40)
    w.close()
    w.unset_read_source()
    ops = decode_operations(w.to_bytes(), [F], payload_size=72, n_modes=1, n_xattrs=1)
    assert [type(o) for o in ops] == [SetReadSource, Open, Bspatch, Close, UnsetReadSource]


@pytest.mark.parametrize(
    ("build", "objects", "match"),
    [
        (lambda w: w.write(1, 0), [F], "no open object"),
        (lambda w: (w.open(0, 0, 5), w.write(6, 0)), [F], "past the object"),
        (lambda w: (w.open(0, 0, 5), w.write(4, 0), w.close()), [F], "closed after 4"),
        (lambda w: w.splice_meta(10, 95), [M], "past the payload"),
        (lambda w: w.splice_content(0, 0, 1, 100), [F], "past the payload"),
        (lambda w: w.splice_content(3, 0, 1, 0), [F], "index past"),
        (lambda w: w.open(0, 0, 1), [M], "metadata"),
        (lambda w: w.splice_meta(1, 0), [], "no more objects"),
        (lambda w: w.splice_meta(1, 0), [M, M], "1 of the part's 2"),
        (lambda w: w.open(0, 0, 0), [F], "still open"),
        (lambda w: (w.open(0, 0, 3), w.bspatch(0, 1)), [F], "read source"),
        (lambda w: w.set_read_source(90), [], "past the payload"),
    ],
)
def test_bad_streams_are_refused(build, objects, match) -> None:  # type: ignore[no-untyped-def]
    w = OpWriter()
    build(w)
    with pytest.raises(DeltaFormatError, match=match):
        decode_operations(w.to_bytes(), objects, payload_size=100, n_modes=1, n_xattrs=1)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_streams_raise_only_typed_errors(data: st.DataObject) -> None:
    raw = bytearray(_ostree_rollsum_stream())
    for _ in range(data.draw(st.integers(1, 5))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i:]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        decode_operations(bytes(raw), [M, F], payload_size=20037, n_modes=1, n_xattrs=1)
    except DeltaFormatError:
        pass


@given(st.binary(max_size=300), st.binary(max_size=300), st.data())
def test_bsdiff_round_trip(old: bytes, new: bytes, data: st.DataObject) -> None:
    """Any control split of a new file into diff (against old) and extra blocks patches back."""
    controls, diff, extra = [], bytearray(), bytearray()
    pos = oldpos = 0
    while pos < len(new):
        x = data.draw(st.integers(0, len(new) - pos))
        y = data.draw(st.integers(0 if x else 1, len(new) - pos - x))
        z = data.draw(st.integers(-50, 50))
        for i in range(x):
            o = old[oldpos + i] if 0 <= oldpos + i < len(old) else 0
            diff.append((new[pos + i] - o) % 256)
        extra += new[pos + x : pos + x + y]
        controls.append((x, y, z))
        pos += x + y
        oldpos += x + z
    patch = encode_bsdiff(controls, bytes(diff), bytes(extra))
    assert apply_bsdiff(old, patch, len(new)) == new


def test_bsdiff_bad_patches_are_typed() -> None:
    good = encode_bsdiff([(3, 2, 0)], b"\x01\x02\x03", b"xy")
    assert apply_bsdiff(b"abc", good, 5) == b"bdfxy"
    for bad, size in ((good[:20], 5), (good[:-1], 5), (good, 4)):
        with pytest.raises(DeltaFormatError):
            apply_bsdiff(b"abc", bad, size)
    neg = (1 << 63 | 5).to_bytes(8, "little") + bytes(16)
    with pytest.raises(DeltaFormatError):
        apply_bsdiff(b"abc", neg, 5)
