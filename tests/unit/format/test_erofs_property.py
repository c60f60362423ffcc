"""Property: images of generated trees pass ``fsck.erofs`` and read back with the same metadata.

The trees cover names of any bytes, all file types, setuid/sticky modes, large uids (extended
inodes), xattrs (shared and inline, escaped ``trusted.overlay.*``), hardlinks, whiteouts, long
symlinks, inline and external (stub) files up to terabytes, empty files and deep directories.
Each image is checked three ways: ``fsck.erofs`` (erofs-utils) accepts it; ``fsck.erofs
--extract`` and ``dump.erofs --path`` show every path with the generated type, mode, owner,
mtime, size, rdev, symlink target and inline bytes, and hardlinks share one inode; and bootree's
own reader turns it back into a tree that writes the same bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.format.composefs_dump import Node, iter_nodes
from bootree.format.erofs import write_image
from bootree.format.erofs_read import read_image


def require_tool(name: str) -> str:
    """Path of a program the test needs; skip where missing (under CI, which installs it: fail)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but not installed")
        pytest.skip(f"{name} is not installed")
    return path

names = st.binary(min_size=1, max_size=24).filter(lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b".."))
xattr_names = st.sampled_from(
    [b"user.a", b"user.mime_type", b"trusted.x", b"security.selinux", b"trusted.overlay.custom", b"user.overlay.redirect", b"security.ima"]
)
xattrs = st.dictionaries(xattr_names, st.sampled_from([b"", b"v", b"system_u:object_r:usr_t:s0\0", b"x" * 300]), max_size=4)


@st.composite
def trees(draw: st.DrawFn) -> Node:
    root = Node(mode=stat.S_IFDIR | draw(st.sampled_from([0o755, 0o555, 0o700])), xattrs=draw(xattrs))
    dirs = [root]
    files: list[Node] = []
    for _ in range(draw(st.integers(1, 14))):
        parent = draw(st.sampled_from(dirs))
        name = draw(names)
        if name in parent.children:
            continue
        kind = draw(st.sampled_from(["dir", "ext", "inline", "empty", "link", "chr", "blk", "fifo", "sock", "whiteout", "hardlink"]))
        perms = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o1777, 0o600, 0o000]))
        node = Node(
            mode=stat.S_IFREG | perms,
            uid=draw(st.sampled_from([0, 1000, 70000])),
            gid=draw(st.sampled_from([0, 5, 100000])),
            mtime_sec=draw(st.sampled_from([0, 1, 1700000000])),
            mtime_nsec=draw(st.sampled_from([0, 999999999])),
            xattrs=draw(xattrs),
        )
        if kind == "dir":
            node.mode = stat.S_IFDIR | perms
            dirs.append(node)
        elif kind == "ext":
            node.size = draw(st.sampled_from([1, 4096, 4097, 1 << 20, 5 << 30, 1 << 42]))
            digest = draw(st.binary(min_size=32, max_size=32))
            node.payload = b"%s/%s.file" % (digest[:1].hex().encode(), digest[1:].hex().encode())
            node.digest = draw(st.sampled_from([None, digest]))
            files.append(node)
        elif kind == "inline":
            node.content = draw(st.binary(min_size=1, max_size=5000))
            node.size = len(node.content)
            files.append(node)
        elif kind == "empty":
            files.append(node)
        elif kind == "link":
            node.mode = stat.S_IFLNK | 0o777
            node.payload = draw(st.sampled_from([b"target", b"../" * 40, b"x" * 1500, b"y" * 4000]))
            node.size = len(node.payload)
        elif kind in ("chr", "blk"):
            node.mode = (stat.S_IFCHR if kind == "chr" else stat.S_IFBLK) | 0o660
            node.rdev = draw(st.sampled_from([os.makedev(1, 3), os.makedev(8, 1), os.makedev(259, 70000)]))
        elif kind == "fifo":
            node.mode = stat.S_IFIFO | 0o644
        elif kind == "sock":
            node.mode = stat.S_IFSOCK | 0o755
        elif kind == "whiteout":
            node.mode = stat.S_IFCHR | 0o000
        else:
            if not files:
                continue
            target = draw(st.sampled_from(files))
            target.nlink += 1
            node = Node(mode=target.mode, link_to=target)
        parent.children[name] = node
    return root


def _links_after_targets(root: Node) -> bool:
    """Whether each inode's first name in path order is its original (not a hardlink) entry."""
    seen: set[int] = set()
    for _path, entry in iter_nodes(root):
        key = id(entry.target())
        if key not in seen and entry.link_to is not None:
            return False
        seen.add(key)
    return True


def _dump_erofs(image: Path, path: bytes) -> dict[str, str]:
    out = subprocess.run(["dump.erofs", b"--path=" + path, str(image)], capture_output=True, check=True).stdout.decode(errors="replace")
    fields = dict(re.findall(r"(Size|NID|Links|Uid|Gid|Access): (\S+)", out))
    return fields


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trees())
def test_generated_trees_pass_erofs_utils(root: Node) -> None:
    require_tool("fsck.erofs")
    require_tool("dump.erofs")
    image = write_image(root)
    again = write_image(read_image(image).root)
    if _links_after_targets(root):
        assert again == image
    else:  # the image cannot tell which name of an inode came first: the reader picks the first
        assert write_image(read_image(again).root) == again
    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "image.cfs"
        img.write_bytes(image)
        subprocess.run(["fsck.erofs", str(img)], check=True, capture_output=True)
        out = Path(tmp) / "x"
        subprocess.run(["fsck.erofs", f"--extract={out}", str(img)], check=True, capture_output=True)
        nids: dict[int, str] = {}
        for path, entry in iter_nodes(root):
            node = entry.target()
            rel = path.lstrip(b"/")
            st_ = os.lstat(os.path.join(os.fsencode(out), rel)) if rel else os.lstat(out)
            info = _dump_erofs(img, path)
            whiteout = stat.S_ISCHR(node.mode) and node.rdev == 0
            expect_type = stat.S_IFREG if whiteout else stat.S_IFMT(node.mode)
            assert stat.S_IFMT(st_.st_mode) == expect_type, path
            # (erofs-utils 1.5 shows and extracts the 0o777 bits only; the reader checks the rest)
            assert stat.S_IMODE(st_.st_mode) & 0o777 == node.mode & 0o777, path
            assert int(info["Access"].split("/")[0], 8) == node.mode & 0o777, path
            assert (int(info["Uid"]), int(info["Gid"])) == (node.uid, node.gid), path
            if os.geteuid() == 0:
                assert (st_.st_uid, st_.st_gid) == (node.uid, node.gid), path
            if not node.is_dir:
                assert st_.st_mtime_ns == node.mtime_sec * 10**9 + node.mtime_nsec, path
                if entry.link_to is not None or node.nlink > 1:
                    assert int(info["Links"]) == node.nlink, path
            else:
                assert int(info["Links"]) == 2 + sum(1 for c in node.children.values() if c.link_to is None and c.is_dir)
            nid = int(info["NID"])
            assert nids.setdefault(id(node), nid) == nid, f"{path!r}: hardlink has another inode"
            if stat.S_ISREG(node.mode):
                assert node.size == int(info["Size"]), path
                if node.content is not None:  # (erofs-utils 1.5 extracts chunk stubs as empty files)
                    assert st_.st_size == node.size, path
                    assert Path(os.fsdecode(os.path.join(os.fsencode(out), rel))).read_bytes() == node.content
            elif stat.S_ISLNK(node.mode):
                assert os.readlink(os.path.join(os.fsencode(out), rel)) == node.payload
            elif stat.S_ISCHR(node.mode) or stat.S_ISBLK(node.mode):
                if whiteout:
                    assert st_.st_size == 0
                else:
                    assert st_.st_rdev == node.rdev & 0xFFFFFFFF, path
        # The reader keeps xattrs (erofs-utils 1.5 does not show them).
        back = dict(iter_nodes(read_image(image).root))
        for path, entry in iter_nodes(root):
            got = back[path].target()
            want = entry.target()
            assert got.xattrs == want.xattrs, path
            assert (got.payload, got.digest) == ((want.payload, want.digest) if stat.S_ISREG(want.mode) and want.content is None else (got.payload, got.digest))


@pytest.mark.parametrize("depth", [1, 40])
def test_deep_directories(depth: int) -> None:
    """Deep trees and directories spanning several dirent blocks pass fsck.erofs."""
    require_tool("fsck.erofs")
    root = Node(mode=stat.S_IFDIR | 0o755)
    node = root
    for i in range(depth):
        child = Node(mode=stat.S_IFDIR | 0o755)
        node.children[b"d%d" % i] = child
        node = child
    for i in range(600):
        node.children[b"f%04d-%s" % (i, b"n" * (i % 50))] = Node(mode=stat.S_IFREG | 0o644, size=i, content=bytes([i % 256]) * i if i < 100 else None)
    image = write_image(root)
    with tempfile.NamedTemporaryFile(suffix=".cfs") as f:
        f.write(image)
        f.flush()
        subprocess.run(["fsck.erofs", f.name], check=True, capture_output=True)
        info = _dump_erofs(Path(f.name), b"/" + b"/".join(b"d%d" % i for i in range(depth)))
        assert int(info["Size"]) > 4096  # several dirent blocks
    assert write_image(read_image(image).root) == image
