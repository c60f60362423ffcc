"""A bounded fuzz pass over every parser of untrusted bytes (issue 10 item 3).

Each parser gets random bytes and mutations (bit flips, truncations, insertions, splices) of a
valid encoding, so that the examples reach past the first length check. The only exceptions
allowed are the typed ``bootree.errors`` ones (``FormatError`` and its subclasses for the
format layer). ``max_examples`` per parser keeps the whole module well under 60 s; set
``BOOTREE_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import hashlib
import os
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.errors import BootreeError
from bootree.format import gvariant
from bootree.format.bls import BlsEntry, strverscmp
from bootree.format.checksum import Checksum, parse_checksum
from bootree.format.content import (
    decode_archive_header,
    decode_bare_user_meta,
    encode_archive_header,
    inflate_chunks,
)
from bootree.format.gvariant import Variant
from bootree.format.kargs import Kargs, split_cmdline
from bootree.format.keyfile import KeyFile, parse_bool
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader
from bootree.format.refspec import parse_refspec, validate_ref_name, validate_remote_name
from bootree.format.summary import Summary, decode_summary_sig

#: Examples per parser: 300 in CI; ``BOOTREE_FUZZ_EXAMPLES=20000`` for a long campaign.
N = int(os.environ.get("BOOTREE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])

C1 = Checksum("e2abaf5012d82badc138e734e5d7fc17f782ff4d959053407446082ec81f9a77")
C2 = Checksum("446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488")

COMMIT = Commit(root_tree=C1, root_meta=C2, timestamp=1700000000, subject="s", body="b", parent=C2,
                metadata=(("version", Variant("s", "1.0")), ("ostree.ref-binding", Variant("as", ["a/b"])))).to_bytes()
DIRTREE = DirTree(files=(("a", C1), ("b.conf", C2)), dirs=(("usr", C1, C2),)).to_bytes()
DIRMETA = DirMeta(0, 0, 0o40755, ((b"security.selinux", b"system_u\0"), (b"user.x", b"1"))).to_bytes()
SUMMARY = Summary.build({"main": (C1, COMMIT), "other/ref": (C2, COMMIT)}, mode="archive-z2",
                        last_modified=1800000000).to_bytes()
SUMMARY_SIG = gvariant.encode("a{sv}", [("ostree.sign.ed25519", Variant("aay", [b"x" * 64]))])
FILEZ_HEADER = encode_archive_header(FileHeader(0, 0, 0o100644, 0, "", ((b"user.a", b"b"),)), 5)
GV_SAMPLES = {
    "a{sv}": gvariant.encode("a{sv}", [("k", Variant("s", "v")), ("n", Variant("t", 7)),
                                       ("l", Variant("as", ["x", "yz"]))]),
    "(sa(say)ay)": gvariant.encode("(sa(say)ay)", ("abc", [("x", b"\x01\x02"), ("yy", b"")], b"zz")),
    "a(ayay)": gvariant.encode("a(ayay)", [(b"n\0", b"v"), (b"m\0", b"")]),
    "(uuu)": gvariant.encode("(uuu)", (1, 2, 3)),
    "v": gvariant.encode("v", Variant("(tb)", (5, True))),
    "mas": gvariant.encode("mas", ["a", "b"]),
}


def _typed_only(fn: object, *args: object) -> None:
    try:
        fn(*args)  # type: ignore[operator]
    except BootreeError:
        pass


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few random edits, or random bytes of a similar length."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=max(16, 2 * len(seed))))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "splice", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1))) if data else 0
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "splice" and data:
            end = draw(st.integers(pos, len(data)))
            data = data[:pos] + data[end:] + data[pos:end]
        elif op == "dup" and data:
            data = data + data[pos:]
    return bytes(data)


# --- binary formats ----------------------------------------------------------------------------


@FUZZ
@given(st.sampled_from(sorted(GV_SAMPLES)), st.data())
def test_gvariant_decode(type_string: str, data: st.DataObject) -> None:
    _typed_only(gvariant.decode, type_string, data.draw(mutated(GV_SAMPLES[type_string])))


@FUZZ
@given(st.text(alphabet="abynqiuxthdsogvm()a{}*?r", max_size=12), st.binary(max_size=64))
def test_gvariant_type_strings(type_string: str, data: bytes) -> None:
    _typed_only(gvariant.decode, type_string, data)


@FUZZ
@given(mutated(COMMIT))
def test_commit(data: bytes) -> None:
    try:
        c = Commit.from_bytes(data)
    except BootreeError:
        return
    # Whatever parses must serialize back and be readable through the accessors callers use.
    assert Commit.from_bytes(c.to_bytes()).root_tree == c.root_tree
    _ = (c.version, c.subject, c.parent, c.timestamp)


@FUZZ
@given(mutated(DIRTREE), st.booleans())
def test_dirtree(data: bytes, strict: bool) -> None:
    try:
        t = DirTree.from_bytes(data, strict=strict)
    except BootreeError:
        return
    if strict:
        assert DirTree.from_bytes(t.to_bytes()) == t


@FUZZ
@given(mutated(DIRMETA))
def test_dirmeta(data: bytes) -> None:
    try:
        m = DirMeta.from_bytes(data)
    except BootreeError:
        return
    assert DirMeta.from_bytes(m.to_bytes()) == m


@FUZZ
@given(mutated(SUMMARY))
def test_summary(data: bytes) -> None:
    try:
        s = Summary.from_bytes(data)
    except BootreeError:
        return
    for r in s.refs:
        _ = (r.version, r.timestamp, s.ref(r.name))
    _ = s.to_bytes()


@FUZZ
@given(mutated(SUMMARY_SIG))
def test_summary_sig(data: bytes) -> None:
    _typed_only(decode_summary_sig, data)


@FUZZ
@given(mutated(FILEZ_HEADER + b"body!"))
def test_archive_file_header(data: bytes) -> None:
    try:
        af = decode_archive_header(data)
    except BootreeError:
        return
    _ = af.header.checksum()


@FUZZ
@given(mutated(gvariant.encode("(uuua(ayay))", (0, 0, 0o100644, [(b"user.a", b"b")]))))
def test_bare_user_meta(data: bytes) -> None:
    _typed_only(decode_bare_user_meta, data)


@FUZZ
@given(mutated(zlib.compressobj(6, zlib.DEFLATED, -15).compress(b"hello world" * 20)), st.integers(0, 400))
def test_inflate(data: bytes, size: int) -> None:
    def run() -> None:
        for _ in inflate_chunks([data[:7], data[7:]], size):
            pass
    _typed_only(run)


@FUZZ
@given(st.text(max_size=80))
def test_checksum(text: str) -> None:
    _typed_only(parse_checksum, text)
    _typed_only(parse_checksum, hashlib.sha256(text.encode()).hexdigest()[: len(text) % 65])


# --- text formats (read from repository configs, origins, boot entries, /proc/cmdline) ---------

KEYFILE = "# c\n[core]\nrepo_version=1\nmode=archive-z2\n\n[remote \"o\"]\nurl=http://x/\ngpg-verify=false\nk[de]=v\n"
BLS = "title SampleOS 1 (ostree:0)\nversion 2\noptions root=LABEL=root ostree=/ostree/boot.1/s/abc/0\nlinux /k\ninitrd /i\n"
CMDLINE = 'root=UUID=1 quiet "a b=c d" rd.x=1,2 init=/sbin/init -- x y'


def _text(seed: str) -> st.SearchStrategy[str]:
    """Random text, or ``seed`` mutated as bytes and decoded leniently."""
    return st.one_of(st.text(max_size=200),
                     mutated(seed.encode()).map(lambda b: b.decode("utf-8", errors="surrogateescape")),
                     mutated(seed.encode()).map(lambda b: b.decode("latin-1")))


@FUZZ
@given(_text(KEYFILE))
def test_keyfile(text: str) -> None:
    try:
        kf = KeyFile.from_text(text)
    except BootreeError:
        return
    again = KeyFile.from_text(kf.to_text())
    for g in kf.groups:
        for k in kf.keys(g):
            _typed_only(kf.get, g, k)
            _typed_only(again.get, g, k)
            _typed_only(kf.get_bool, g, k, False)
            _typed_only(kf.get_list, g, k)
            _typed_only(kf.get_int, g, k, 0)


@FUZZ
@given(st.text(max_size=12))
def test_keyfile_bool(text: str) -> None:
    _typed_only(parse_bool, text)


@FUZZ
@given(_text(BLS))
def test_bls(text: str) -> None:
    try:
        e = BlsEntry.parse(text)
    except BootreeError:
        return
    _ = (e.version, e.options, e.to_text())
    strverscmp(e.version or "", "1.2a")


@FUZZ
@given(_text(CMDLINE))
def test_kargs(text: str) -> None:
    _typed_only(split_cmdline, text)
    try:
        k = Kargs.parse(text)
    except BootreeError:
        return
    _ = (str(k), k.get("root"))
    _typed_only(Kargs.parse, str(k))


@FUZZ
@given(_text("remote:os/x86_64/stable"))
def test_refspec(text: str) -> None:
    _typed_only(parse_refspec, text)
    _typed_only(validate_ref_name, text)
    _typed_only(validate_remote_name, text)


def test_surrogate_strings_are_a_gvariant_error() -> None:
    """Found by the fuzz pass (tar input): encoding a non-UTF-8 name raised UnicodeEncodeError."""
    import pytest

    from bootree.errors import GVariantError

    with pytest.raises(GVariantError, match="UTF-8"):
        gvariant.encode("s", "bad-\udcff")
    with pytest.raises(GVariantError):
        FileHeader(0, 0, 0o120777, 0, "\udcff").to_bytes()


def test_strverscmp_any_text() -> None:
    """Found by the fuzz pass: a version with a surrogate-escaped byte raised UnicodeEncodeError."""
    assert strverscmp("\udc80", "1") != 0
    assert strverscmp("1\u0663", "12") != 0  # a non-ASCII digit is not a digit to glibc
    assert strverscmp("9", "10") < 0 and strverscmp("1.010", "1.09") < 0


@FUZZ
@given(st.text(max_size=12), st.text(max_size=12))
def test_strverscmp_is_an_order(a: str, b: str) -> None:
    ab, ba = strverscmp(a, b), strverscmp(b, a)
    assert (ab == 0) == (ba == 0) == (a == b)
    assert (ab < 0) == (ba > 0)
