"""Two related commits to make deltas between (shared by the delta unit and compat tests)."""

from __future__ import annotations

import gzip
import os
import random
from dataclasses import dataclass
from pathlib import Path

from bootree.format.checksum import Checksum
from bootree.repo import Repo, RepoMode
from builders import File, Link, make_tree


@dataclass
class Pair:
    """A source repository holding v1 and its child v2."""

    repo: Repo
    v1: Checksum
    v2: Checksum


def _text(seed: int, lines: int) -> bytes:
    rnd = random.Random(seed)
    return b"".join(f"line {i} {rnd.randrange(10**9)}\n".encode() for i in range(lines))


def newc_cpio(members: dict[str, bytes]) -> bytes:
    """A newc cpio archive (the initramfs format) of regular files."""
    out = bytearray()

    def add(name: str, data: bytes, mode: int) -> None:
        fields = [1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        out.extend(b"070701" + b"".join(f"{v:08x}".encode() for v in fields) + name.encode() + b"\0")
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for name, data in members.items():
        add(name, data, 0o100644)
    add("TRAILER!!!", b"", 0)
    return bytes(out)


def make_pair(tmp_path: Path, mode: RepoMode = RepoMode.ARCHIVE) -> Pair:
    """v1 → v2: a text file edited in place (rollsum), a binary with scattered edits (bsdiff),
    a big new file (fallback when enabled), a gzip'd manual page edited inside, a file moved
    and renamed, symlinks, modes and an xattr."""
    big = _text(1, 20_000)  # ~440 kB: rollsum territory
    blob = bytearray(random.Random(2).randbytes(120_000))
    v1 = {
        "usr/share/doc/big.txt": File(big),
        "usr/lib/libfoo.so.1": File(bytes(blob), 0o755),
        "usr/bin/tool": File(b"#!/bin/sh\necho v1\n", 0o755),
        "etc/conf": File(b"a=1\n", xattrs={"user.note": b"x"}),
        "etc/link": Link("conf"),
        "empty": b"",
    }
    manual = _text(4, 3000)
    moved = _text(5, 2500)
    v1["usr/share/man/tool.1.gz"] = File(gzip.compress(manual, compresslevel=9, mtime=0))
    v1["usr/share/old/place.dat"] = File(moved)
    edited = bytearray(big)
    edited[200_000:200_010] = b"EDITED....."[:10]
    for i in range(0, len(blob), 997):  # scattered single-byte edits: few whole chunks survive
        blob[i] ^= 0x5A
    # a module only the initramfs holds: its old self is worth reading decompressed
    module = random.Random(6).randbytes(60_000)
    v1["usr/lib/modules/1.0-1/initramfs.img"] = File(
        gzip.compress(newc_cpio({"usr/lib/libfoo.so.1": v1["usr/lib/libfoo.so.1"].data, "mod.ko": module}), mtime=0), 0o600
    )
    v2 = dict(v1)
    v2["usr/share/doc/big.txt"] = File(bytes(edited) + b"appended\n")
    v2["usr/lib/libfoo.so.1"] = File(bytes(blob), 0o755)
    del v2["usr/lib/modules/1.0-1/initramfs.img"]  # a kernel bump: new directory, the new library inside
    v2["usr/lib/modules/1.0-2/initramfs.img"] = File(
        gzip.compress(newc_cpio({"usr/lib/libfoo.so.1": bytes(blob), "mod.ko": module + b"v2"}), mtime=0), 0o600
    )
    v2["usr/bin/tool"] = File(b"#!/bin/sh\necho v2\n", 0o755)
    v2["usr/share/new/huge.bin"] = File(os.urandom(300_000))
    v2["etc/link2"] = Link("../usr/bin/tool")
    v2["usr/share/man/tool.1.gz"] = File(gzip.compress(manual.replace(b"line 7 ", b"LINE 7 "), compresslevel=9, mtime=0))
    del v2["usr/share/old/place.dat"]
    v2["usr/lib/moved/renamed.bin"] = File(moved[:30_000] + b"changed" + moved[30_000:])
    repo = Repo.init(tmp_path / "src", mode=mode)
    c1 = repo.commit([make_tree(tmp_path / "t1", v1)], branch="os", subject="v1", timestamp=1700000000)
    c2 = repo.commit([make_tree(tmp_path / "t2", v2)], branch="os", subject="v2", timestamp=1700000100)
    return Pair(repo, c1, c2)


def initramfs_like(size: int, seed: int = 7) -> bytes:
    """Text-like runs, zeros and random stretches (the last give stored deflate blocks), as
    an initramfs holds: contents whose gzip stream cuts into many pieces."""
    rng = random.Random(seed)
    words = [b"module", b"kernel ", b"initramfs\n", b"lib", b"/usr/", b"x86_64 "]
    out = bytearray()
    while len(out) < size:
        kind = rng.randrange(3)
        if kind == 0:
            out += b"".join(rng.choice(words) for _ in range(rng.randrange(500, 5000)))
        elif kind == 1:
            out += bytes(rng.randrange(1000, 40000))
        else:
            out += rng.randbytes(rng.randrange(20000, 60000))
    return bytes(out[:size])
