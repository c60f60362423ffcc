"""Which kernel of a deployment tree ostree 2022.7 boots, and how it names its files in /boot."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bootree.errors import KernelNotFound
from bootree.sysroot.bootloader import find_kernel


def _write(p: Path, text: str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_legacy_names_without_a_kernel_version_and_a_devicetree(tmp_path: Path) -> None:
    csum = hashlib.sha256(b"x").hexdigest()
    _write(tmp_path / f"usr/lib/ostree-boot/vmlinuz-{csum}", "k")
    _write(tmp_path / f"usr/lib/ostree-boot/devicetree-{csum}", "d")
    _write(tmp_path / f"boot/vmlinuz-9-{hashlib.sha256(b'y').hexdigest()}", "ignored: only the first directory counts")
    kl = find_kernel(tmp_path)
    assert (kl.bootcsum, kl.kernel[1], kl.initramfs, kl.devicetree) == (
        csum, "vmlinuz", None, (f"usr/lib/ostree-boot/devicetree-{csum}", "devicetree"))


def test_legacy_checksums_must_agree(tmp_path: Path) -> None:
    _write(tmp_path / f"boot/vmlinuz-1-{'a' * 64}", "k")
    _write(tmp_path / f"boot/initramfs-1.img-{'b' * 64}", "i")
    with pytest.raises(KernelNotFound, match="mismatched"):
        find_kernel(tmp_path)


def test_modules_win_unless_only_legacy_has_an_initramfs(tmp_path: Path) -> None:
    _write(tmp_path / "usr/lib/modules/5.1/vmlinuz", "k")
    _write(tmp_path / f"usr/lib/ostree-boot/vmlinuz-5.1-{'c' * 64}", "k2")
    assert find_kernel(tmp_path).kernel[0] == "usr/lib/modules/5.1/vmlinuz"  # neither has one
    _write(tmp_path / f"usr/lib/ostree-boot/initramfs-5.1.img-{'c' * 64}", "i2")
    kl = find_kernel(tmp_path)
    assert (kl.bootcsum, kl.initramfs) == ("c" * 64, (f"usr/lib/ostree-boot/initramfs-5.1.img-{'c' * 64}", "initramfs-5.1.img"))


def test_dtb_directory_is_installed_as_dtb_and_no_dtb_ignores_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "usr/lib/modules/5.1/vmlinuz", "k")
    _write(tmp_path / "usr/lib/modules/5.1/dtb/b.dtb", "d")
    kl = find_kernel(tmp_path)
    assert kl.dtb_dir == ("usr/lib/modules/5.1/dtb", "dtb")
    assert kl.bootcsum == hashlib.sha256(b"kd").hexdigest()
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "no-dtb")
    kl = find_kernel(tmp_path)
    assert kl.dtb_dir is None and kl.bootcsum == hashlib.sha256(b"k").hexdigest()
