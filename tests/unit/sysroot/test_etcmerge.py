"""The /etc three-way merge on plain directories, against ostree 2022.7's recorded outcome."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootree.errors import EtcMergeConflict
from bootree.sysroot.etcmerge import copy_tree, diff_etc, merge_etc


def _write(p: Path, text: str, mode: int = 0o644) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.chmod(p, mode)


def _usr_etc(root: Path, version: int) -> Path:
    etc = root / "usr" / "etc"
    etc.mkdir(parents=True)
    os.symlink("../usr/lib/os-release", etc / "os-release")
    _write(etc / "foo.conf", "a=1\n" if version == 1 else "a=2\n")
    _write(etc / "unchanged.conf", "keep\n")
    _write(etc / "todelete.conf", "del\n" if version == 1 else "del2\n")
    if version == 2:
        _write(etc / "added-upstream.conf", "upstream\n")
    return etc


def _listing(etc: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(etc):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            content = p.read_text().replace("\n", "|") if p.is_file() and not p.is_symlink() else ""
            out.append(f"{st.st_mode & 0o7777:o} ./{p.relative_to(etc)} {content}".rstrip())
    return sorted(out, key=lambda s: s.split(" ")[1])


def test_merge_matches_ostree_vector(tmp_path: Path) -> None:
    """The cases of admin-fake-sysroot.expected.txt, same counts and same resulting tree."""
    orig = _usr_etc(tmp_path / "v1", 1)
    mod = tmp_path / "v1" / "etc"
    copy_tree(orig, mod)
    _write(mod / "foo.conf", "a=LOCAL\n")
    (mod / "todelete.conf").unlink()
    _write(mod / "new-local.conf", "mine\n")
    _write(mod / "newdir" / "f", "x\n")
    os.chmod(mod / "newdir", 0o755)
    os.chmod(mod / "unchanged.conf", 0o600)

    new_usr_etc = _usr_etc(tmp_path / "v2", 2)
    new = tmp_path / "v2" / "etc"
    copy_tree(new_usr_etc, new)
    diff = merge_etc(orig, mod, new)

    assert diff.message == "Copying /etc changes: 2 modified, 1 removed, 3 added"
    assert sorted(diff.modified) == ["foo.conf", "unchanged.conf"]
    assert diff.removed == ("todelete.conf",)
    assert diff.added == ("new-local.conf", "newdir", "newdir/f")
    assert _listing(new) == [
        "644 ./added-upstream.conf upstream|",
        "644 ./foo.conf a=LOCAL|",
        "644 ./new-local.conf mine|",
        "755 ./newdir",
        "644 ./newdir/f x|",
        "777 ./os-release",
        "600 ./unchanged.conf keep|",
    ]
    assert os.readlink(new / "os-release") == "../usr/lib/os-release"


def test_type_change_and_symlink_target_count_as_modified(tmp_path: Path) -> None:
    orig, mod = tmp_path / "o", tmp_path / "m"
    _write(orig / "a", "x")
    _write(orig / "d" / "f", "x")
    os.symlink("t1", orig / "l")
    copy_tree(orig, mod)
    assert not diff_etc(orig, mod)
    os.unlink(mod / "l")
    os.symlink("t2", mod / "l")
    (mod / "a").unlink()
    (mod / "a").mkdir()
    diff = diff_etc(orig, mod)
    assert sorted(diff.modified) == ["a", "l"]
    assert diff.added == () and diff.removed == ()


def test_file_vs_new_directory_conflict_writes_nothing(tmp_path: Path) -> None:
    orig, mod, new = tmp_path / "o", tmp_path / "m", tmp_path / "n"
    _write(orig / "conf", "default\n")
    _write(orig / "gone", "x\n")
    copy_tree(orig, mod)
    _write(mod / "conf", "local\n")
    (mod / "gone").unlink()
    _write(new / "conf" / "inner", "new default dir\n")
    _write(new / "gone", "x\n")
    before = _listing(new)
    with pytest.raises(EtcMergeConflict) as exc:
        merge_etc(orig, mod, new)
    assert exc.value.path == "/etc/conf"
    assert _listing(new) == before  # nothing removed, nothing copied


def test_local_dir_replaces_new_file_and_parent_gets_local_mode(tmp_path: Path) -> None:
    orig, mod, new = tmp_path / "o", tmp_path / "m", tmp_path / "n"
    _write(orig / "sub" / "x", "1")
    copy_tree(orig, mod)
    _write(mod / "sub" / "x", "local")
    os.chmod(mod / "sub", 0o750)
    _write(mod / "added" / "deep" / "f", "y")
    _write(new / "sub" / "x", "2")
    _write(new / "added", "upstream file")
    merge_etc(orig, mod, new)
    assert (new / "sub" / "x").read_text() == "local"
    assert os.stat(new / "sub").st_mode & 0o7777 == 0o750
    assert (new / "added" / "deep" / "f").read_text() == "y"


def test_missing_orig_means_everything_added(tmp_path: Path) -> None:
    mod = tmp_path / "m"
    _write(mod / "a", "1")
    assert diff_etc(tmp_path / "nothing", mod).added == ("a",)
