"""``_fs.open_beneath`` and ``_fs.Tree``: paths of a tree never resolve onto the host.

Every case runs twice: with ``openat2`` (when the kernel has it) and with the per-component
``O_NOFOLLOW`` fallback, which must resolve the same way.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootree import _fs
from bootree._fs import beneath

CANARY = b"host-secret-canary\n"


@pytest.fixture(params=["openat2", "fallback"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "openat2":
        if not _fs.openat2_supported():
            pytest.skip("the kernel (or a seccomp filter) does not allow openat2")
    else:
        monkeypatch.setattr(beneath, "_openat2", False)
    yield request.param


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A tree with hostile links, and a "host" directory beside it holding a canary file."""
    host = tmp_path / "host"
    (host / "etc/ssh").mkdir(parents=True)
    (host / "etc/ssh/ssh_host_key").write_bytes(CANARY)
    root = tmp_path / "tree"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=tree\n")
    (root / "etc").mkdir()
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    os.symlink(str(host / "etc/ssh"), root / "usr/etc-abs")
    os.symlink("../" * 12 + str(host / "etc/ssh").lstrip("/"), root / "usr/etc-rel")
    os.symlink("/usr/lib/os-release", root / "etc/abs-inside")
    os.symlink("/../../../../usr/lib/os-release", root / "etc/dotdot-inside")
    return root, host


def test_plain_file_and_directory(impl: str, layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with _fs.Tree(root) as t:
        assert t.read_bytes("usr/lib/os-release") == b"ID=tree\n"
        assert t.listdir("usr") == ["etc-abs", "etc-rel", "lib"]
        st = t.lstat("usr/etc-abs")
        assert st is not None and os.path.stat.S_ISLNK(st.st_mode)  # type: ignore[attr-defined]
        assert t.lstat("usr/missing/x") is None
        assert t.readlink("etc/os-release") == "../usr/lib/os-release"


@pytest.mark.parametrize("rel", ["usr/etc-abs/ssh_host_key", "usr/etc-rel/ssh_host_key", "etc/os-release"])
def test_symlinks_refused_without_in_root(impl: str, layout: tuple[Path, Path], rel: str) -> None:
    root, _ = layout
    with _fs.Tree(root) as t, pytest.raises(OSError) as ei:
        t.read_bytes(rel)
    assert ei.value.errno == errno.ELOOP


@pytest.mark.parametrize("rel", ["usr/etc-abs", "usr/etc-rel"])
def test_symlinked_directory_is_no_subtree(impl: str, layout: tuple[Path, Path], rel: str) -> None:
    root, _ = layout
    with _fs.Tree(root) as t, pytest.raises(OSError) as ei:
        t.subtree(rel)
    assert ei.value.errno == errno.ELOOP
    with _fs.Tree(root) as t, pytest.raises(OSError):
        t.listdir(rel)


def test_dotdot_and_absolute_refused(impl: str, layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with _fs.Tree(root) as t:
        for rel in ("usr/../usr/lib/os-release", "../host/etc/ssh/ssh_host_key", "/etc/passwd"):
            with pytest.raises(OSError) as ei:
                t.open(rel)
            assert ei.value.errno == errno.EXDEV, rel


def test_in_root_follows_links_inside_the_tree_only(impl: str, layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with _fs.Tree(root) as t:
        assert t.read_bytes("etc/os-release", in_root=True) == b"ID=tree\n"
        assert t.read_bytes("etc/abs-inside", in_root=True) == b"ID=tree\n"
        assert t.read_bytes("etc/dotdot-inside", in_root=True) == b"ID=tree\n"
        # The hostile links now point at paths inside the tree, which do not exist there.
        for rel in ("usr/etc-abs/ssh_host_key", "usr/etc-rel/ssh_host_key"):
            with pytest.raises(FileNotFoundError):
                t.read_bytes(rel, in_root=True)


def test_in_root_symlink_loop(impl: str, tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with _fs.Tree(tmp_path) as t, pytest.raises(OSError) as ei:
        t.read_bytes("a", in_root=True)
    assert ei.value.errno == errno.ELOOP


def test_create_through_symlink_refused(impl: str, layout: tuple[Path, Path]) -> None:
    root, host = layout
    with _fs.Tree(root) as t:
        with pytest.raises(OSError) as ei:
            t.open("usr/etc-abs/new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        assert ei.value.errno == errno.ELOOP
        fd = t.open("usr/lib/new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    assert not (host / "etc/ssh/new").exists()
    assert (root / "usr/lib/new").is_file()


def test_parent_and_read_bytes_refuse_special_files(impl: str, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with _fs.Tree(tmp_path) as t:
        with pytest.raises(OSError) as ei:
            t.read_bytes("fifo")  # must not block
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(OSError):
            t.parent("")
