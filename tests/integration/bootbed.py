"""The qemu test bed of the boot-chain tests: boot a disk image once and read its serial log.

OVMF → systemd-boot → BLS entry (boot counting) → Debian kernel + bootree's initramfs → the
test OS of :mod:`osimage`, whose init prints ``BOOTREE-TEST:`` lines, runs the health checks
and the command file left on the ESP (:func:`set_cmd`), then powers off.

KVM is used when ``/dev/kvm`` answers ``KVM_GET_API_VERSION`` (CI may or may not have it);
otherwise qemu emulates (TCG), 5-10 times slower. ``BOOTREE_QEMU_ACCEL=tcg`` forces emulation,
``BOOTREE_QEMU_TIMEOUT`` bounds each boot (default 300 s).
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bootree.install import disk as diskmod

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
QEMU_TIMEOUT = int(os.environ.get("BOOTREE_QEMU_TIMEOUT", "300"))
MTOOLS = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
_KVM_GET_API_VERSION = 0xAE00


@functools.cache
def kvm_usable() -> bool:
    """Whether qemu can use KVM here: ``/dev/kvm`` opens read-write and speaks API version 12."""
    if os.environ.get("BOOTREE_QEMU_ACCEL", "").lower() == "tcg":
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _KVM_GET_API_VERSION) == 12
    except OSError:
        return False
    finally:
        os.close(fd)


def accel_args() -> list[str]:
    """qemu's accelerator arguments: KVM with the host CPU, else TCG with a large translation cache."""
    return ["-accel", "kvm", "-cpu", "host"] if kvm_usable() else ["-accel", "tcg,tb-size=512"]


@dataclass
class Boot:
    """One boot's serial log, reduced to what the tests look at."""

    log: str
    seconds: float

    @property
    def version(self) -> int | None:
        m = re.search(r"BOOTREE-TEST: booted uptime=\S+ version=(\d+)", self.log)
        return int(m.group(1)) if m else None

    @property
    def health_rc(self) -> int | None:
        m = re.search(r"BOOTREE-TEST: health rc=(\d+)", self.log)
        return int(m.group(1)) if m else None

    def between(self, begin: str, end: str) -> str:
        m = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), self.log, re.S)
        assert m, f"no {begin!r} ... {end!r} in the log:\n{self.log[-3000:]}"
        return m.group(1)


def qemu_boot(disk: Path, log: Path, *, snapshot: bool = False, extra_disks: Sequence[Path] = ()) -> Boot:
    """Boot ``disk`` once (fresh OVMF variables: counting lives in ESP file names only).

    ``extra_disks`` are attached read-only after it as further virtio disks (``/dev/vdb``...).
    """
    vars_fd = log.with_suffix(".vars.fd")
    shutil.copyfile(OVMF_VARS, vars_fd)
    drives = ["-drive", f"file={disk},format=raw,if=virtio" + (",snapshot=on" if snapshot else "")]
    for extra in extra_disks:
        drives += ["-drive", f"file={extra},format=raw,if=virtio,readonly=on"]
    t0 = time.monotonic()
    with open(log, "wb") as out:
        subprocess.run(["timeout", str(QEMU_TIMEOUT), "qemu-system-x86_64", "-machine", "q35", "-m", "768",
                        "-nographic", "-no-reboot", "-nic", "none", *accel_args(),
                        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                        "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}", *drives],
                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    text = log.read_bytes().decode(errors="replace").replace("\r", "")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z=]", "", text)
    return Boot(text, time.monotonic() - t0)


def esp_offset(disk: Path) -> int:
    return diskmod.partition_offsets(disk)[0][0]


def entries(disk: Path) -> list[str]:
    return diskmod.esp_list(disk, esp_offset(disk))


def set_cmd(disk: Path, script: str, scratch: Path) -> None:
    """Leave a shell script on the ESP for the test OS's init to run after the health check."""
    off = esp_offset(disk)
    subprocess.run(["mmd", "-i", f"{disk}@@{off}", "::/bootree-test"], env=MTOOLS, capture_output=True, check=False)
    diskmod.esp_write(disk, off, "/bootree-test/cmd", script.encode(), scratch=scratch)
