"""Disk images without root privileges or loop devices: GPT, a FAT ESP, an ext4 root.

Layer: install. Every step works on plain files: ``mkfs.vfat -C`` creates the ESP image and
mtools (``mmd``, ``mcopy``) fill it from a directory; ``mkfs.ext4 -d`` creates the root
file system from the sysroot directory; ``sgdisk`` writes the partition table and the two
images are copied in at their partition offsets. mtools can also read and change the ESP inside
the finished disk (``-i disk.img@@OFFSET``), which is how tests inspect the boot counters.

Gotchas found in the verified recipe (``docs/bootchain.md``, "Building disk images"): ``sgdisk -q``
silently writes nothing, so it runs without ``-q`` and the table is read back and checked.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bootree import _run
from bootree.errors import InstallError

__all__ = [
    "DiskLayout",
    "MiB",
    "assemble_gpt",
    "esp_list",
    "esp_read",
    "esp_write",
    "make_esp_image",
    "make_root_image",
    "partition_offsets",
    "required_tools",
]

log = logging.getLogger(__name__)

MiB = 1 << 20
ESP_TYPE = "ef00"
#: "Linux x86-64 root (/)" (the Discoverable Partitions Specification type for x86-64 roots).
ROOT_TYPE = "8304"
ESP_LABEL = "ESP"
ROOT_LABEL = "bootree-root"
_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


def required_tools() -> dict[str, str | None]:
    """Every program an install needs, with its path or ``None`` when missing."""
    names = ("sgdisk", "mkfs.vfat", "mcopy", "mmd", "mdir", "mkfs.ext4")
    return {n: _run.find_program(n) for n in names}


def _tool(name: str) -> str:
    path = _run.find_program(name)
    if path is None:
        raise InstallError(f"{name} is not installed",
                           hint="install gdisk, dosfstools, mtools and e2fsprogs (Debian package names)")
    return path


@dataclass(frozen=True, slots=True)
class DiskLayout:
    """Byte offsets and sizes of the two partitions in a finished disk image."""

    esp_offset: int
    esp_size: int
    root_offset: int
    root_size: int


def make_esp_image(src: Path, image: Path, *, size_mib: int) -> None:
    """A FAT32 image of ``size_mib`` holding the tree at ``src`` (directories, then files).

    Raises:
        InstallError: for a missing tool; ExternalCommandError when one fails.
    """
    if image.exists():
        image.unlink()
    _run.run([_tool("mkfs.vfat"), "-F", "32", "-n", ESP_LABEL, "-C", image, str(size_mib * 1024)])
    dirs: list[Path] = []
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = Path(dirpath).relative_to(src)
        if rel != Path("."):
            dirs.append(rel)
        files.extend(rel / f for f in sorted(filenames))
    if dirs:
        _run.run([_tool("mmd"), "-i", image, *[f"::/{d.as_posix()}" for d in dirs]], env=_MTOOLS_ENV)
    for f in files:
        _run.run([_tool("mcopy"), "-i", image, src / f, f"::/{f.as_posix()}"], env=_MTOOLS_ENV)


def make_root_image(src: Path, image: Path, *, size_mib: int, label: str = ROOT_LABEL,
                    fs_verity: bool = False) -> None:
    """An ext4 image of ``size_mib`` populated from ``src`` with ``mkfs.ext4 -d`` (no mount needed).

    ``fs_verity`` adds the ``verity`` feature with 4 KiB blocks (ext4's fs-verity needs the block
    size to equal the page size).

    Raises:
        InstallError: for a missing tool; ExternalCommandError when mkfs fails (e.g. too small).
    """
    if image.exists():
        image.unlink()
    extra = ["-b", "4096", "-O", "verity"] if fs_verity else []
    # -E root_owner: the image keeps the owners of src (we run as root) or maps to the caller.
    _run.run([_tool("mkfs.ext4"), "-q", "-F", "-L", label, *extra, "-d", src, image, f"{size_mib}M"])


def partition_offsets(disk: Path) -> list[tuple[int, int]]:
    """``(offset, size)`` in bytes of each partition, from ``sgdisk -i``.

    Raises:
        InstallError: when the table has no partitions (the ``sgdisk -q`` trap).
    """
    out = []
    for n in (1, 2, 3, 4):
        text = _run.run([_tool("sgdisk"), "-i", str(n), disk]).stdout.decode()
        first = re.search(r"First sector: (\d+)", text)
        last = re.search(r"Last sector: (\d+)", text)
        if not first or not last:
            break
        out.append((int(first.group(1)) * 512, (int(last.group(1)) - int(first.group(1)) + 1) * 512))
    if not out:
        raise InstallError(f"{disk} has no GPT partitions after sgdisk")
    return out


def assemble_gpt(disk: Path, esp_image: Path, root_image: Path) -> DiskLayout:
    """Write a GPT disk image: partition 1 the ESP, partition 2 the root, each copied in.

    Raises:
        InstallError: when the written table does not match.
    """
    esp_mib = -(-esp_image.stat().st_size // MiB)
    root_mib = -(-root_image.stat().st_size // MiB)
    total = (1 + esp_mib + root_mib + 1) * MiB
    with open(disk, "wb") as f:
        f.truncate(total)
    # no -q: sgdisk 1.0.9 silently writes nothing with it
    _run.run([_tool("sgdisk"), "-o", "-n", f"1:2048:+{esp_mib}M", "-t", f"1:{ESP_TYPE}", "-c", f"1:{ESP_LABEL}",
              "-n", f"2:0:+{root_mib}M", "-t", f"2:{ROOT_TYPE}", "-c", f"2:{ROOT_LABEL}", disk])
    parts = partition_offsets(disk)
    if len(parts) != 2 or parts[0][1] < esp_image.stat().st_size or parts[1][1] < root_image.stat().st_size:
        raise InstallError(f"unexpected partition table on {disk}: {parts}")
    fd = os.open(disk, os.O_WRONLY)
    try:
        for (offset, _), img in zip(parts, (esp_image, root_image), strict=True):
            with open(img, "rb") as src:
                pos = offset
                while chunk := src.read(4 * MiB):
                    if chunk.count(0) == len(chunk):
                        pos += len(chunk)  # keep the image sparse
                        continue
                    os.pwrite(fd, chunk, pos)
                    pos += len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return DiskLayout(parts[0][0], parts[0][1], parts[1][0], parts[1][1])


def _esp_spec(disk: Path, offset: int) -> str:
    return f"{os.fspath(disk)}@@{offset}"


def esp_list(disk: Path, offset: int, directory: str = "/loader/entries") -> list[str]:
    """File names in one ESP directory inside a disk image (read with mtools; no mount)."""
    out = _run.run([_tool("mdir"), "-b", "-i", _esp_spec(disk, offset), f"::{directory}"], env=_MTOOLS_ENV,
                   check=False)
    if out.returncode != 0:
        return []
    return sorted(line.rstrip("/").rsplit("/", 1)[-1] for line in out.stdout.decode().splitlines() if line.strip())


def esp_read(disk: Path, offset: int, path: str) -> bytes | None:
    """One file of the ESP inside a disk image, or ``None``."""
    out = _run.run([_tool("mtype"), "-i", _esp_spec(disk, offset), f"::{path}"], env=_MTOOLS_ENV, check=False)
    return out.stdout if out.returncode == 0 else None


def esp_write(disk: Path, offset: int, path: str, data: bytes, *, scratch: Path) -> None:
    """Create or replace one file of the ESP inside a disk image (parent directories must exist)."""
    scratch.write_bytes(data)
    _run.run([_tool("mcopy"), "-o", "-i", _esp_spec(disk, offset), scratch, f"::{path}"], env=_MTOOLS_ENV)
