"""The /etc copy and merge on descriptors: deep trees, links kept as links, nothing followed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bootree import _fs
from bootree.sysroot.etcmerge import copy_tree, diff_etc, merge_etc, prepare_etc


def _deep(root: Path, depth: int) -> None:
    """``root/d/d/.../leaf.conf``, made one level at a time (``mkdir -p`` itself recurses)."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open("leaf.conf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"x\n")
        os.close(leaf)
    finally:
        os.close(fd)


def _remove_deep(root: Path) -> None:
    """Remove a deep chain of ``d`` directories from the bottom (``shutil.rmtree`` recurses)."""
    depth = 0
    p = root
    while (p / "d").is_dir():
        p, depth = p / "d", depth + 1
    while True:
        for name in os.listdir(p):
            if not (p / name).is_dir():
                os.unlink(p / name)
        if p == root:
            break
        p = p.parent
        os.rmdir(p / "d")
    os.rmdir(root)


def _stack_depth() -> int:
    f, n = sys._getframe(), 0
    while f is not None:
        f, n = f.f_back, n + 1  # type: ignore[assignment]
    return n


@pytest.mark.slow
def test_deep_tree_copies_and_diffs_without_recursion(tmp_path: Path) -> None:
    """Deeper than the recursion limit allows: copy, diff and merge walk iteratively.

    The limit is lowered to 150 frames above this test instead of building a tree deeper than
    the default 1000 (which costs a minute of I/O on a busy disk).
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 150)
    try:
        _deep_case(tmp_path)
    finally:
        sys.setrecursionlimit(old)
        for name in ("orig", "mod", "new"):
            if (tmp_path / name).is_dir():
                _remove_deep(tmp_path / name)


def _deep_case(tmp_path: Path) -> None:
    orig = tmp_path / "orig"
    _deep(orig, 400)
    mod = tmp_path / "mod"
    copy_tree(orig, mod)
    leaf = mod.joinpath(*["d"] * 400, "leaf.conf")
    assert leaf.read_text() == "x\n"
    assert not diff_etc(orig, mod)
    leaf.write_text("local\n")
    new = tmp_path / "new"
    copy_tree(orig, new)
    diff = merge_etc(orig, mod, new)
    assert diff.modified == ("/".join(["d"] * 400) + "/leaf.conf",)
    assert new.joinpath(*["d"] * 400, "leaf.conf").read_text() == "local\n"


def test_links_are_copied_not_followed(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("secret\n")
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(str(host), src / "dirlink")
    os.symlink(str(host / "secret"), src / "filelink")
    dst = tmp_path / "dst"
    copy_tree(src, dst)
    assert os.readlink(dst / "dirlink") == str(host) and os.readlink(dst / "filelink") == str(host / "secret")
    assert sorted(os.listdir(dst)) == ["dirlink", "filelink"]


def test_prepare_etc_keeps_modes_and_removes_updated_stamp(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/etc/sub").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "usr/etc/sub/f").write_text("f\n")
    os.chmod(root / "usr/etc/sub", 0o750)
    (root / "usr/etc/.updated").write_text("")
    (root / "var/.updated").write_text("")
    with _fs.Tree(root) as t:
        prepare_etc(t)
    assert (root / "etc/sub/f").read_text() == "f\n"
    assert os.stat(root / "etc/sub").st_mode & 0o777 == 0o750
    assert not (root / "etc/.updated").exists() and not (root / "var/.updated").exists()
    assert (root / "usr/etc/.updated").exists()


def test_merge_into_a_tree_without_etc(tmp_path: Path) -> None:
    """No /usr/etc in the new tree: fine without local changes, an error with some."""
    from bootree.errors import SysrootError
    from bootree.sysroot.etcmerge import merge_deployment_etc

    old, new = tmp_path / "old", tmp_path / "new"
    (old / "usr/etc").mkdir(parents=True)
    (old / "usr/etc/a").write_text("a\n")
    new.mkdir()
    with _fs.Tree(old) as t:
        prepare_etc(t)
    assert not merge_deployment_etc(old, new)
    (old / "etc/a").write_text("local\n")
    with pytest.raises(SysrootError, match="no /etc"):
        merge_deployment_etc(old, new)
