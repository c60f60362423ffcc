"""Test builders: sample trees on disk and their comparison.

``make_tree(root, spec)`` writes a tree from a dict; ``snapshot(root)`` reads one back into a
comparable dict (type, mode, owner, content or target, user xattrs), ignoring times.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class File:
    """A regular file in a tree spec."""

    data: bytes = b""
    mode: int = 0o644
    xattrs: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Link:
    """A symlink in a tree spec."""

    target: str


@dataclass(frozen=True)
class Dir:
    """An (empty unless filled by other entries) directory in a tree spec."""

    mode: int = 0o755


Spec = dict[str, File | Link | Dir | bytes]


def make_tree(root: Path, spec: Spec, *, root_mode: int = 0o755) -> Path:
    """Create ``root`` and the entries of ``spec`` (paths relative to root)."""
    root.mkdir(parents=True, exist_ok=True)
    dirs: list[tuple[Path, int]] = []
    for rel, entry in sorted(spec.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(entry, bytes):
            entry = File(entry)
        if isinstance(entry, File):
            p.write_bytes(entry.data)
            os.chmod(p, entry.mode)
            for k, v in entry.xattrs.items():
                os.setxattr(p, k, v)
        elif isinstance(entry, Link):
            os.symlink(entry.target, p)
        else:
            p.mkdir(exist_ok=True)
            dirs.append((p, entry.mode))
    for p, mode in sorted(dirs, key=lambda x: -len(x[0].parts)):
        os.chmod(p, mode)
    os.chmod(root, root_mode)
    return root


def snapshot(root: Path, *, owners: bool = True, xattrs: bool = True) -> dict[str, tuple[object, ...]]:
    """A comparable description of every entry below ``root`` (root itself as ``.``)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames] if dirpath == os.fspath(root) else [*dirnames, *filenames]:
            full = os.path.join(dirpath, name) if name != "." else dirpath
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            owner = (st.st_uid, st.st_gid) if owners else ()
            xa: tuple[tuple[str, bytes], ...] = ()
            if xattrs and not stat.S_ISLNK(st.st_mode):
                xa = tuple(sorted((k, os.getxattr(full, k)) for k in os.listxattr(full) if k.startswith("user.")))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(full), *owner)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), *owner, xa)
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), Path(full).read_bytes(), *owner, xa)
    return out


VECTOR_TREE: Spec = {
    "hello.txt": File(b"hello\n", 0o644),
    "empty": File(b"", 0o644),
    "link": Link("hello.txt"),
    "sub/run.sh": File(b"#!/bin/sh\necho hi\n", 0o755),
    "sub": Dir(0o755),
}
"""The tree of ``ostree-vectors/make-vectors.sh``."""

#: Checksums the real ostree 2022.7 produced for VECTOR_TREE (expected-checksums.txt).
VECTOR_COMMIT = "2bf73aea69b26f5a1c5f84749aba88db87eea6ae9b0954076885710f2e2d9cf0"
VECTOR_OBJECTS = {
    ("dirtree", "/"): "e2abaf5012d82badc138e734e5d7fc17f782ff4d959053407446082ec81f9a77",
    ("dirmeta", "/"): "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488",
    ("dirtree", "/sub"): "230db4e51acc220a7118c2f5904c9e45b637e0ef4a6093ba58aab0c6e303ae51",
    ("file", "/empty"): "cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e",
    ("file", "/hello.txt"): "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b",
    ("file", "/link"): "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35",
    ("file", "/sub/run.sh"): "89b350d278ff59ba4780bc377b8ebfee8ade6b55c99fab1ec84e133bc6ea52c5",
}
VECTOR_CONTENT_CHECKSUM = "1bafc10b227fdaba21d7032ef163c5dcf3809f38496f3d69789b9d8064d7311f"
VECTOR_XATTR_COMMIT = "b57af1a929a33bc16e47d26cc35b5bc1c3b81a62d9e9cb0af586e91a6b1164aa"
