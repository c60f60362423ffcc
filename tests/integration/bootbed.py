"""The qemu test bed of the boot-chain tests: boot a disk image once and read its serial log.

OVMF → systemd-boot → BLS entry (boot counting) → Debian kernel + bootree's initramfs → the
test OS of :mod:`osimage`, whose init prints ``BOOTREE-TEST:`` lines, runs the health checks
and the command file left on the ESP (:func:`set_cmd`), then powers off.

KVM is used when ``/dev/kvm`` answers ``KVM_GET_API_VERSION`` and qemu starts a machine with it
(CI may or may not have it); otherwise qemu emulates (TCG), 5-10 times slower. ``BOOTREE_QEMU_ACCEL=tcg`` forces emulation,
``BOOTREE_QEMU_TIMEOUT`` bounds each boot (default 300 s).
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import tempfile
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
#: The kernel command line of the test OS. ``no_timer_check``: under emulation on a busy host
#: (two test workers, other jobs) the kernel's early check of the IO-APIC timer can miss its
#: ticks and panic ("IO-APIC + timer doesn't work!"); virtual machines skip that check.
KARGS = ("console=ttyS0", "quiet", "no_timer_check")


def _kvm_device_ok() -> bool:
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


_KVM_FAILED = b"KVM internal error"
_TCG = ("-accel", "tcg,tb-size=512")
_broken_kvm = False


def _watched(argv: Sequence[str], log: Path, timeout: float, until: bytes | None = None) -> bool:
    """Run qemu with its console in ``log``; stop at ``until`` or a KVM failure; whether KVM failed.

    A guest that KVM cannot run (nested virtualisation without some CPU feature) does not exit:
    qemu reports the emulation failure and pauses it, so the log is watched to stop it at once.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(["qemu-system-x86_64", *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        failed = False
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.25)
                data = log.read_bytes()
                if _KVM_FAILED in data:
                    failed = True
                    break
                if until is not None and until in data:
                    break
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return failed or _KVM_FAILED in log.read_bytes()


def _firmware(vars_fd: Path) -> list[str]:
    shutil.copyfile(OVMF_VARS, vars_fd)
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}"]


@functools.cache
def accel_args() -> tuple[str, ...]:
    """qemu's accelerator arguments: KVM (host CPU model, else qemu's default one), else TCG.

    ``/dev/kvm`` may answer and still not run a guest (nested virtualisation refuses some MSRs of
    ``-cpu host``, or cannot emulate what the firmware does), so each candidate runs OVMF up to
    its boot manager first.
    """
    if os.environ.get("BOOTREE_QEMU_ACCEL", "").lower() == "tcg" or not _kvm_device_ok():
        return _TCG
    with tempfile.TemporaryDirectory(prefix="bootree-kvm-probe-") as tmp:
        log = Path(tmp) / "probe.log"
        for args in (("-accel", "kvm", "-cpu", "host"), ("-accel", "kvm")):
            failed = _watched([*args, "-machine", "q35", "-m", "128", "-nographic", "-nodefaults", "-serial", "stdio",
                               "-no-reboot", *_firmware(Path(tmp) / "vars.fd")], log, 60, until=b"BdsDxe")
            if not failed and b"BdsDxe" in log.read_bytes():
                return args
    return _TCG


def kvm_usable() -> bool:
    """Whether the boots run under KVM (until one of them fails under it)."""
    return not _broken_kvm and "kvm" in accel_args()


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


def qemu_boot(disk: Path, log: Path, *, snapshot: bool = False, extra_disks: Sequence[Path] = (),
              timeout: float | None = None) -> Boot:
    """Boot ``disk`` once (fresh OVMF variables: counting lives in ESP file names only).

    ``extra_disks`` are attached read-only after it as further virtio disks (``/dev/vdb``...);
    ``timeout`` (default ``BOOTREE_QEMU_TIMEOUT``) bounds the boot.
    """
    global _broken_kvm
    drives = ["-drive", f"file={disk},format=raw,if=virtio" + (",snapshot=on" if snapshot else "")]
    for extra in extra_disks:
        drives += ["-drive", f"file={extra},format=raw,if=virtio,readonly=on"]
    t0 = time.monotonic()
    while True:
        accel = accel_args() if kvm_usable() else _TCG
        argv = ["-machine", "q35", "-m", "768", "-nographic", "-no-reboot", "-nic", "none", *accel,
                *_firmware(log.with_suffix(".vars.fd")), *drives]
        if not _watched(argv, log, timeout or QEMU_TIMEOUT) or accel == _TCG:
            break
        _broken_kvm = True  # KVM started the firmware but not this guest: this boot and the rest under TCG
        t0 = time.monotonic()
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
