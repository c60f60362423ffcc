"""Disk images from directories without loop devices, and install to-disk end to end (small)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bootree.errors import InstallError, RefNotFound
from bootree.install import disk as diskmod
from bootree.install.todisk import InstallOptions, install_to_disk, parse_size, prepare_sysroot
from bootree.repo import Repo, RepoMode
from bootree.sysroot import Sysroot, esp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sysroot"))
from sampleos import make_tree  # type: ignore[import-not-found]


def _need_tools() -> None:
    missing = [n for n, p in diskmod.required_tools().items() if p is None] + (
        [] if diskmod._run.find_program("mtype") else ["mtype"])
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {missing}")
        pytest.skip(f"missing {' '.join(missing)} (gdisk, dosfstools, mtools, e2fsprogs)")


def test_parse_size() -> None:
    assert parse_size("2G") == 2048 and parse_size("1536M") == 1536 and parse_size("300") == 300
    assert parse_size("1GiB") == 1024
    with pytest.raises(InstallError):
        parse_size("lots")


def test_images_and_gpt(tmp_path: Path) -> None:
    _need_tools()
    src = tmp_path / "espsrc"
    (src / "EFI/BOOT").mkdir(parents=True)
    (src / "EFI/BOOT/BOOTX64.EFI").write_bytes(b"loader")
    (src / "loader/entries").mkdir(parents=True)
    (src / "loader/entries/a+3.conf").write_text("title a\n")
    root = tmp_path / "rootsrc"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hello").write_text("hi\n")
    diskmod.make_esp_image(src, tmp_path / "esp.img", size_mib=40)
    diskmod.make_root_image(root, tmp_path / "root.img", size_mib=16)
    layout = diskmod.assemble_gpt(tmp_path / "disk.img", tmp_path / "esp.img", tmp_path / "root.img")
    assert layout.esp_offset == 1 << 20 and layout.root_offset >= layout.esp_offset + 40 * (1 << 20)
    parts = diskmod.partition_offsets(tmp_path / "disk.img")
    assert [p[0] for p in parts] == [layout.esp_offset, layout.root_offset]
    d = tmp_path / "disk.img"
    assert diskmod.esp_list(d, layout.esp_offset) == ["a+3.conf"]
    assert diskmod.esp_read(d, layout.esp_offset, "/EFI/BOOT/BOOTX64.EFI") == b"loader"
    diskmod.esp_write(d, layout.esp_offset, "/loader/entries/b.conf", b"x", scratch=tmp_path / "s")
    assert diskmod.esp_list(d, layout.esp_offset) == ["a+3.conf", "b.conf"]
    with open(d, "rb") as f:  # the ext4 superblock magic at its offset in the root partition
        f.seek(layout.root_offset + 1024 + 56)
        assert f.read(2) == b"\x53\xef"
    # --fs-verity: 4 KiB blocks and the verity feature (RO_COMPAT 0x8000, superblock offset 0x64)
    diskmod.make_root_image(root, tmp_path / "vroot.img", size_mib=16, fs_verity=True)
    sb = (tmp_path / "vroot.img").read_bytes()[1024:2048]
    assert int.from_bytes(sb[24:28], "little") == 2  # s_log_block_size: 1024 << 2
    assert int.from_bytes(sb[0x64:0x68], "little") & 0x8000
    plain = (tmp_path / "root.img").read_bytes()[1024:2048]
    assert not int.from_bytes(plain[0x64:0x68], "little") & 0x8000


@pytest.fixture
def source(tmp_path: Path) -> Repo:
    if os.geteuid() != 0:
        pytest.skip("the sysroot's bare repo needs root")
    repo = Repo.init(tmp_path / "src", mode=RepoMode.ARCHIVE)
    from bootree.repo import CommitOptions

    for v in (1, 2):
        repo.commit([make_tree(tmp_path / f"t{v}", v, with_shell=False)], branch=f"os/v{v}", subject=f"v{v}",
                    options=CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True))
    return repo


def test_prepare_sysroot_writes_esp_and_config(source: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
    sdboot = tmp_path / "sd-boot.efi"
    sdboot.write_bytes(b"MZ sd-boot")
    root, e = tmp_path / "root", tmp_path / "esp"
    sysroot, d = prepare_sysroot(source, "os/v1", root, e, options=InstallOptions(
        systemd_boot=sdboot, kargs=("console=ttyS0",), tries=2, extra_refs=("os/v2",)))
    assert (e / "EFI/BOOT/BOOTX64.EFI").read_bytes() == b"MZ sd-boot"
    names = esp.list_entries(e)
    assert names == [f"bootree-1-default-{d.csum}.0+2.conf"]
    text = (e / "loader/entries" / names[0]).read_text()
    assert "root=LABEL=bootree-root rw console=ttyS0 ostree=/ostree/deploy/default/deploy/" in text
    assert (root / "boot/efi").is_dir() and not os.listdir(root / "boot/efi")  # the empty mount point
    s = Sysroot.open(root)
    assert s.repo.config.get("bootree", "esp") == "boot/efi"
    assert s.repo.config.get("sysroot", "boot-counting-tries") == "2"
    assert set(s.repo.list_refs("os")) == {"os/v1", "os/v2"}
    assert sysroot.deployments[0].origin is not None and sysroot.deployments[0].refspec == "os/v1"
    with pytest.raises(RefNotFound):
        prepare_sysroot(source, "os/nope", tmp_path / "r2", tmp_path / "e2", options=InstallOptions(systemd_boot=sdboot))


def test_install_to_disk(source: Repo, tmp_path: Path) -> None:
    _need_tools()
    sdboot = tmp_path / "sd-boot.efi"
    sdboot.write_bytes(b"MZ sd-boot")
    res = install_to_disk(source, "os/v1", tmp_path / "out/disk.img",
                          options=InstallOptions(systemd_boot=sdboot, esp_size_mib=40, size_mib=300))
    assert res.disk.is_file() and len(diskmod.partition_offsets(res.disk)) == 2
    assert diskmod.esp_list(res.disk, res.layout.esp_offset) == list(res.esp_entries)
    assert os.listdir(tmp_path / "out") == ["disk.img"]  # the work directory is gone
    with pytest.raises(InstallError, match="too small"):
        install_to_disk(source, "os/v1", tmp_path / "small.img",
                        options=InstallOptions(systemd_boot=sdboot, esp_size_mib=40, size_mib=50))
