"""syslinux, U-Boot and GRUB configurations from BLS entries, and which loader a sysroot uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootree.errors import SysrootError
from bootree.format.bls import BlsEntry
from bootree.format.keyfile import KeyFile
from bootree.sysroot import bootconfig


def _entry(title: str, kdir: str, *, initrd: bool = True, options: str = "root=LABEL=x ostree=/ostree/boot.1/os/c/0") -> BlsEntry:
    e = BlsEntry().set("title", title).set("options", options).set("linux", f"{kdir}/vmlinuz-1")
    return e.set("initrd", f"{kdir}/initramfs-1.img") if initrd else e


ENTRIES = [_entry("OS 2 (ostree:0)", "/ostree/os-b"), _entry("OS 1 (ostree:1)", "/ostree/os-a", initrd=False)]


def test_syslinux_keeps_foreign_labels_and_regenerates_ostree_ones() -> None:
    current = ("PROMPT 1\nDEFAULT OS 0 (ostree:0)\nLABEL rescue\n\tKERNEL /vmlinuz-rescue\n"
               "LABEL OS 0 (ostree:0)\n\tKERNEL /boot/ostree/os-z/vmlinuz-1\n\tAPPEND old\n")
    text = bootconfig.syslinux_config(current, ENTRIES)
    assert text.splitlines() == [
        "PROMPT 1", "LABEL rescue", "\tKERNEL /vmlinuz-rescue", "",
        "DEFAULT OS 2 (ostree:0)",
        "LABEL OS 2 (ostree:0)", "\tKERNEL /boot/ostree/os-b/vmlinuz-1", "\tINITRD /boot/ostree/os-b/initramfs-1.img",
        "\tAPPEND root=LABEL=x ostree=/ostree/boot.1/os/c/0",
        "LABEL OS 1 (ostree:1)", "\tKERNEL /boot/ostree/os-a/vmlinuz-1", "\tAPPEND root=LABEL=x ostree=/ostree/boot.1/os/c/0",
    ]
    # A DEFAULT naming somebody else's label: ostree drops the line and writes no DEFAULT.
    mine = bootconfig.syslinux_config("DEFAULT rescue\nLABEL rescue\n\tKERNEL /vmlinuz-rescue\n", ENTRIES)
    assert "DEFAULT" not in mine and mine.startswith("LABEL rescue\n")
    with pytest.raises(SysrootError, match="No KERNEL"):
        bootconfig.syslinux_config("LABEL broken\n\tAPPEND x\n", ENTRIES)


def test_uboot_numbers_the_others_and_appends_the_systems_uenv() -> None:
    text = bootconfig.uboot_config(ENTRIES, "loadfdt=x\n")
    assert text.splitlines() == [
        "kernel_image=/boot/ostree/os-b/vmlinuz-1", "ramdisk_image=/boot/ostree/os-b/initramfs-1.img",
        "bootargs=root=LABEL=x ostree=/ostree/boot.1/os/c/0", "loadfdt=x", "",
        "kernel_image2=/boot/ostree/os-a/vmlinuz-1", "bootargs2=root=LABEL=x ostree=/ostree/boot.1/os/c/0",
    ]


def test_grub2_menu_entries() -> None:
    text = bootconfig.grub2_menu(ENTRIES, "/boot")
    assert "menuentry 'OS 2 (ostree:0)' {\n\t linux /boot/ostree/os-b/vmlinuz-1 root=LABEL=x" in text
    assert "\t initrd /boot/ostree/os-b/initramfs-1.img\n}" in text


class _Repo:
    def __init__(self, value: str | None) -> None:
        self.config = KeyFile()
        if value is not None:
            self.config.set("sysroot", "bootloader", value)


def test_choose_follows_the_config_then_the_files(tmp_path: Path) -> None:
    sr = tmp_path
    (sr / "boot/grub2").mkdir(parents=True)
    os.symlink("../loader/grub.cfg", sr / "boot/grub2/grub.cfg")
    assert bootconfig.choose(sr, _Repo(None)) == "grub2"  # dangling (no boot/loader yet): still GRUB's
    assert bootconfig.choose(tmp_path / "nothing", _Repo(None)) is None
    assert bootconfig.choose(sr, _Repo("none")) is None
    (sr / "boot/syslinux").mkdir()
    os.symlink("../loader/syslinux.cfg", sr / "boot/syslinux/syslinux.cfg")
    assert bootconfig.choose(sr, _Repo("auto")) == "syslinux"  # probed first, even dangling
    assert bootconfig.choose(sr, _Repo("uboot")) == "uboot"
    with pytest.raises(SysrootError, match=r"Invalid sysroot\.bootloader"):
        bootconfig.choose(sr, _Repo("lilo"))
