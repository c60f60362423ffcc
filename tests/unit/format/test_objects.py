"""Object model: ostree's vectors byte for byte, and validation of unsafe input."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import FormatError, GVariantError, InvalidTreeEntry
from bootree.format import gvariant
from bootree.format.checksum import Checksum, from_raw, parse_checksum, to_raw
from bootree.format.gvariant import Variant
from bootree.format.objects import (
    DIRTREE_TYPE,
    Commit,
    DirMeta,
    DirTree,
    FileHeader,
    ObjectType,
    _parse_dirtree_fast,
    content_checksum,
)

C = Checksum

# Real ostree 2022.7 objects (objects-hexdump.txt).
COMMIT_HEX = (
    "6f73 7472 6565 2e72 6566 2d62 696e 6469 6e67 0000 0000 0000 7465 7374 0005 0061"
    "7313 2273 7562 6a00 626f 6479 0000 0000 0000 0000 6553 f100 e2ab af50 12d8 2bad"
    "c138 e734 e5d7 fc17 f782 ff4d 9590 5340 7446 082e c81f 9a77 446a 0ef1 1b7c c167"
    "f3b6 03e5 85c7 eeee b675 faa4 12d5 ec73 f629 88eb 0b6c 5488 582d 2823 2323"
)
DIRTREE_ROOT = C("e2abaf5012d82badc138e734e5d7fc17f782ff4d959053407446082ec81f9a77")
DIRMETA = C("446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488")
DIRTREE_SUB = C("230db4e51acc220a7118c2f5904c9e45b637e0ef4a6093ba58aab0c6e303ae51")


def test_commit_vector_bytes() -> None:
    data = bytes.fromhex(COMMIT_HEX.replace(" ", ""))
    assert hashlib.sha256(data).hexdigest() == "2bf73aea69b26f5a1c5f84749aba88db87eea6ae9b0954076885710f2e2d9cf0"
    c = Commit.from_bytes(data)
    assert c.subject == "subj" and c.body == "body" and c.timestamp == 1700000000
    assert c.root_tree == DIRTREE_ROOT and c.root_meta == DIRMETA and c.parent is None
    assert c.get("ostree.ref-binding") == ["test"]
    assert c.to_bytes() == data
    built = Commit(
        root_tree=DIRTREE_ROOT, root_meta=DIRMETA, subject="subj", body="body", timestamp=1700000000,
        metadata=(("ostree.ref-binding", Variant("as", ["test"])),),
    )
    assert built.to_bytes() == data
    assert c.content_checksum == "1bafc10b227fdaba21d7032ef163c5dcf3809f38496f3d69789b9d8064d7311f"
    assert content_checksum(DIRTREE_ROOT, DIRMETA) == c.content_checksum


def test_dirtree_and_dirmeta_vectors() -> None:
    sub = DirTree(files=(("run.sh", C("89b350d278ff59ba4780bc377b8ebfee8ade6b55c99fab1ec84e133bc6ea52c5")),))
    assert hashlib.sha256(sub.to_bytes()).hexdigest() == DIRTREE_SUB
    root = DirTree.build(
        {
            "hello.txt": C("44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b"),
            "link": C("f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35"),
            "empty": C("cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e"),
        },
        {"sub": (DIRTREE_SUB, DIRMETA)},
    )
    data = root.to_bytes()
    assert len(data) == 195
    assert hashlib.sha256(data).hexdigest() == DIRTREE_ROOT
    assert DirTree.from_bytes(data) == root
    meta = DirMeta(0, 0, 0o40755)
    assert meta.to_bytes() == bytes.fromhex("00000000 00000000 000041ed".replace(" ", ""))
    assert hashlib.sha256(meta.to_bytes()).hexdigest() == DIRMETA


def test_xattr_vectors() -> None:
    meta = DirMeta(0, 0, 0o40755, ((b"user.d", b"dir"),))
    assert meta.to_bytes().hex() == "00000000000000000000" + "41ed" + "757365722e6400" + "646972" + "070b"
    assert hashlib.sha256(meta.to_bytes()).hexdigest() == "656823b555ce069ebb4e6c27dd134b7a7765c201ca654a73b838ad937c0deddd"
    f = FileHeader(0, 0, 0o100644, 0, "", ((b"user.a", b"one"), (b"user.b", b"2")))
    assert f.checksum(b"x") == "e7500eb2417e2425eb001894f15de32ada73a4bbdb5ed0f4844e6037d0583bd5"


def test_file_header_vectors() -> None:
    hello = FileHeader(0, 0, 0o100644)
    assert hello.checksum_prefix().hex() == "00000012" "00000000" "00000000" "00000000" "000081a4" "00000000" "00" "11"
    assert hello.checksum(b"hello\n") == "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b"
    link = FileHeader(0, 0, 0o120777, 0, "hello.txt")
    assert link.checksum() == "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35"
    assert FileHeader.from_bytes(link.to_bytes()) == link


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "/", "x\0y"])
def test_dirtree_rejects_unsafe_names(name: str) -> None:
    with pytest.raises(InvalidTreeEntry):
        DirTree(files=((name, DIRMETA),))
    # And from serialized bytes, as a hostile repository would serve them.
    good = DirTree(files=(("ok", DIRMETA),)).to_bytes()
    if "\0" in name:
        return  # cannot be expressed as a GVariant string at all
    evil = good.replace(b"ok\0", name.encode() + b"\0") if len(name) == 2 else None
    if evil is not None:
        with pytest.raises(FormatError):
            DirTree.from_bytes(evil)


def test_dirtree_rejects_unsorted_and_duplicates() -> None:
    with pytest.raises(FormatError):
        DirTree(files=(("b", DIRMETA), ("a", DIRMETA)))
    with pytest.raises(FormatError):
        DirTree(files=(("a", DIRMETA), ("a", DIRMETA)))
    with pytest.raises(FormatError):
        DirTree(files=(("a", DIRMETA),), dirs=(("a", DIRMETA, DIRMETA),))


def test_sort_is_by_raw_bytes() -> None:
    t = DirTree.build({"Z": DIRMETA, "a": DIRMETA, "é": DIRMETA, "_": DIRMETA}, {})
    assert [n for n, _ in t.files] == ["Z", "_", "a", "é"]


def test_file_header_validation() -> None:
    with pytest.raises(FormatError):
        FileHeader(0, 0, 0o040755)  # a directory is not a file object
    with pytest.raises(FormatError):
        FileHeader(0, 0, 0o120777)  # symlink without target
    with pytest.raises(FormatError):
        FileHeader(0, 0, 0o100644, 0, "target")
    with pytest.raises(FormatError):
        FileHeader(0, 0, 0o100644, 0, "", ((b"b", b"1"), (b"a", b"2")))


def test_commit_rejects_bad_parent_length() -> None:
    c = Commit(root_tree=DIRTREE_ROOT, root_meta=DIRMETA)
    data = bytearray(c.to_bytes())
    with pytest.raises((FormatError, GVariantError)):
        Commit.from_bytes(bytes(data[:-1]))


def test_object_type_numbers() -> None:
    assert [t.number for t in ObjectType] == [1, 2, 3, 4, 5, 6]
    assert ObjectType.from_number(4) is ObjectType.COMMIT
    with pytest.raises(FormatError):
        ObjectType.from_number(99)


def test_parse_checksum() -> None:
    assert parse_checksum("a" * 64) == "a" * 64
    for bad in ["A" * 64, "a" * 63, "g" * 64, ""]:
        with pytest.raises(FormatError):
            parse_checksum(bad)


names = st.text(alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=["Cs"]), min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
csums = st.binary(min_size=32, max_size=32).map(lambda b: C(b.hex()))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, csums, max_size=8), st.dictionaries(names, st.tuples(csums, csums), max_size=5))
def test_dirtree_roundtrip(files: dict[str, Checksum], dirs: dict[str, tuple[Checksum, Checksum]]) -> None:
    dirs = {k: v for k, v in dirs.items() if k not in files}
    tree = DirTree.build(files, dirs)
    assert DirTree.from_bytes(tree.to_bytes()) == tree


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 0o7777),
    st.lists(st.tuples(st.binary(min_size=1, max_size=10).filter(lambda b: b"\0" not in b), st.binary(min_size=1, max_size=10)),
             max_size=4, unique_by=lambda x: x[0]),
    st.text(max_size=30), st.integers(0, 2**64 - 1),
)
def test_commit_and_header_roundtrip(uid: int, gid: int, perm: int, xattrs: list[tuple[bytes, bytes]], subject: str, ts: int) -> None:
    subject = subject.replace("\0", "")
    xa = tuple(sorted(xattrs))
    h = FileHeader(uid, gid, 0o100000 | perm, 0, "", xa)
    assert FileHeader.from_bytes(h.to_bytes()) == h
    m = DirMeta(uid, gid, 0o40000 | perm, xa)
    assert DirMeta.from_bytes(m.to_bytes()) == m
    c = Commit(root_tree=DIRTREE_ROOT, root_meta=DIRMETA, parent=DIRMETA, subject=subject, timestamp=ts,
               metadata=(("version", Variant("s", subject)),))
    assert Commit.from_bytes(c.to_bytes()) == c


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, csums, max_size=8), st.dictionaries(names, st.tuples(csums, csums), max_size=5))
def test_fast_dirtree_parser_agrees_with_strict(files: dict[str, Checksum], dirs: dict[str, tuple[Checksum, Checksum]]) -> None:
    # The lenient fast path used for reads must decode normal-form data exactly as the codec does.
    dirs = {k: v for k, v in dirs.items() if k not in files}
    data = DirTree.build(files, dirs).to_bytes()
    assert DirTree.from_bytes(data, strict=False) == DirTree.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fast_dirtree_parser_rejects_garbage_cleanly(data: bytes) -> None:
    try:
        tree = DirTree.from_bytes(data, strict=False)
    except FormatError:
        return
    for name, *_ in tree.files + tree.dirs:  # type: ignore[operator]
        assert name not in ("", ".", "..") and "/" not in name


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=300).filter(lambda s: "/" not in s and "\0" not in s and s not in (".", "..")), csums, max_size=12),
    st.dictionaries(names, st.tuples(csums, csums), max_size=12),
)
def test_direct_dirtree_encoder_matches_codec(files: dict[str, Checksum], dirs: dict[str, tuple[Checksum, Checksum]]) -> None:
    # Long names push elements and arrays over 255 bytes, so 2-byte offsets are covered too.
    dirs = {k: v for k, v in dirs.items() if k not in files}
    try:
        tree = DirTree.build(files, dirs)
    except FormatError:
        return
    assert tree.to_bytes() == tree.to_bytes_generic()


def _strict_reference(data: bytes) -> DirTree:
    """What strict parsing meant before its fast path: the generic codec alone."""
    files, dirs = gvariant.decode(DIRTREE_TYPE, data)
    return DirTree(
        tuple((n, from_raw(c)) for n, c in files),
        tuple((n, from_raw(t), from_raw(m)) for n, t, m in dirs),
    )


def _verdict(parse: Callable[[bytes], DirTree], data: bytes) -> DirTree | str:
    try:
        return parse(data)
    except FormatError:
        return "rejected"


def _damage(data: bytes, edits: list[tuple[int, int, str]]) -> bytes:
    """``data`` with each edit applied: ``set``, ``set-tail`` (one of the last 8 bytes, where the
    framing offsets are), ``insert``, ``delete`` one byte, ``cut`` the rest."""
    out = bytearray(data)
    for pos, byte, op in edits:
        if not out:
            break
        i = pos % len(out)
        if op == "set":
            out[i] = byte
        elif op == "set-tail":
            out[len(out) - 1 - pos % min(len(out), 8)] = byte
        elif op == "insert":
            out.insert(i, byte)
        elif op == "delete":
            del out[i]
        else:
            del out[i:]
    return bytes(out)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=300).filter(lambda s: "/" not in s and "\0" not in s and s not in (".", "..")), csums, max_size=6),
    st.dictionaries(names, st.tuples(csums, csums), max_size=6),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "insert", "delete", "cut"])), max_size=3),
)
def test_strict_dirtree_fast_path_agrees_with_codec(
    files: dict[str, Checksum], dirs: dict[str, tuple[Checksum, Checksum]], edits: list[tuple[int, int, str]]
) -> None:
    # Strict parsing takes the direct parser for whatever it accepts; on valid and on damaged
    # bytes alike it must accept exactly what the generic codec accepts, as the same tree.
    dirs = {k: v for k, v in dirs.items() if k not in files}
    try:
        data = DirTree.build(files, dirs).to_bytes()
    except FormatError:
        return
    raw = _damage(data, edits)
    assert _verdict(DirTree.from_bytes, raw) == _verdict(_strict_reference, raw)


@settings(max_examples=800, deadline=None)
@given(
    st.dictionaries(names, csums, max_size=5),
    st.dictionaries(names, st.tuples(csums, csums), max_size=5),
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "set-tail", "insert", "delete"])),
        min_size=1,
        max_size=4,
    ),
)
def test_direct_dirtree_parser_accepts_only_the_normal_form(
    files: dict[str, Checksum], dirs: dict[str, tuple[Checksum, Checksum]], edits: list[tuple[int, int, str]]
) -> None:
    # Strict parsing trusts the direct parser without re-encoding: whatever non-empty bytes it
    # accepts must be exactly the encoding of the value it returns. Edits favour the framing
    # offsets at the end of each container ("set-tail"), where a non-normal encoding would hide.
    dirs = {k: v for k, v in dirs.items() if k not in files}
    raw = _damage(DirTree.build(files, dirs).to_bytes(), edits)
    try:
        tree = _parse_dirtree_fast(raw)
    except (IndexError, ValueError, UnicodeDecodeError, struct.error, FormatError):
        return
    assert not raw or tree.to_bytes() == raw


_risky_names = st.one_of(names, st.sampled_from(["", ".", "..", "a/b", "a", "b", "é", "\u00e9x"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_risky_names, csums), max_size=6), st.lists(st.tuples(_risky_names, csums, csums), max_size=6))
def test_lenient_dirtree_parser_validates_as_the_constructor_does(
    files: list[tuple[str, Checksum]], dirs: list[tuple[str, Checksum, Checksum]]
) -> None:
    # The lenient parser builds its value without the constructor's validation pass, so it must
    # accept exactly what the constructor accepts: unsafe names, unsorted or duplicated entries
    # and a name both a file and a directory, encoded as they are by the generic codec.
    data = gvariant.encode(
        DIRTREE_TYPE, ([(n, to_raw(c)) for n, c in files], [(n, to_raw(t), to_raw(m)) for n, t, m in dirs])
    )
    try:
        expected: DirTree | str = DirTree(tuple(files), tuple(dirs))
    except FormatError:
        expected = "rejected"
    assert _verdict(lambda b: DirTree.from_bytes(b, strict=False), data) == expected
