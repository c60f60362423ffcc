"""Boot loader configuration besides the BLS entries: syslinux, U-Boot and GRUB 2, as ostree writes it.

Layer: sysroot. Boot loaders that do not read Boot Loader Specification entries need their own
file, generated from the entries of the new boot version and written into
``boot/loader.<B>/`` *before* the ``boot/loader`` swap, so the one atomic rename switches it
together with the entries (the sysroot's ``boot/syslinux/syslinux.cfg``,
``boot/uEnv.txt`` and ``boot/grub2/grub.cfg`` are symlinks through ``boot/loader``). Which
loader is chosen follows ostree 2022.7: the repository's ``[sysroot] bootloader`` (``auto``
when unset; ``none`` writes only BLS entries), and in ``auto`` the first of syslinux (a
``boot/syslinux/syslinux.cfg``), GRUB 2 (``boot/grub/grub.cfg`` or ``boot/grub2/grub.cfg``)
and U-Boot (``boot/loader/uEnv.txt``) whose file exists.

* syslinux: the current configuration is kept except ostree's own ``LABEL`` blocks and a
  ``DEFAULT`` that names one, which are regenerated from the entries (``KERNEL``/``INITRD``/
  ``DEVICETREE`` prefixed with ``/boot``, ``APPEND`` the options).
* U-Boot: ``kernel_image``/``ramdisk_image``/``fdt_file``/``fdtdir``/``bootargs``, suffixed
  ``2``, ``3``... after the default, followed by the default deployment's own
  ``usr/lib/ostree-boot/uEnv.txt``.
* GRUB 2: ``$OSTREE_GRUB2_EXEC -o boot/loader.<B>/grub.cfg`` when set (ostree's hook for a
  generator such as its ``ostree-grub-generator``); otherwise bootree's built-in generator
  writes the ``menuentry`` blocks that script writes (bootree does not run the host's
  ``grub2-mkconfig``, which would describe the host, not this sysroot).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bootree import _fs, _run
from bootree.errors import ExternalCommandError, SysrootError
from bootree.format.bls import BlsEntry
from bootree.format.kargs import Kargs
from bootree.repo import Repo

__all__ = ["CHOICES", "SYSLINUX_CFG", "UBOOT_ENV", "choose", "write_config"]

#: The values of ``[sysroot] bootloader`` (ostree's; ``zipl`` is s390x-only and not built).
CHOICES = ("auto", "none", "grub2", "syslinux", "uboot")
SYSLINUX_CFG = "boot/syslinux/syslinux.cfg"
UBOOT_ENV = "boot/loader/uEnv.txt"
_GRUB_CFGS = ("boot/grub/grub.cfg", "boot/grub2/grub.cfg")
#: The file each loader's configuration is written to, in ``boot/loader.<B>/``.
_FILES = {"syslinux": "syslinux.cfg", "uboot": "uEnv.txt", "grub2": "grub.cfg"}


def choose(sysroot: Path, repo: Repo) -> str | None:
    """The boot loader whose configuration a new boot version needs, or ``None`` (BLS only).

    Raises:
        SysrootError: an unknown ``[sysroot] bootloader`` value.
    """
    configured = repo.config.get("sysroot", "bootloader", "auto") or "auto"
    if configured not in CHOICES:
        raise SysrootError(f"Invalid sysroot.bootloader configuration: {configured!r}",
                           hint=f"use one of {', '.join(CHOICES)}")
    if configured == "none":
        return None
    if configured != "auto":
        return configured
    if os.path.lexists(sysroot / SYSLINUX_CFG):
        return "syslinux"
    if any(os.path.lexists(sysroot / p) for p in _GRUB_CFGS):  # a dangling link counts, as for GLib
        return "grub2"
    if os.path.lexists(sysroot / UBOOT_ENV):
        return "uboot"
    return None


def write_config(
    sysroot: Path, loader: str, bootversion: int, entries: Sequence[BlsEntry], default_root: Path | None
) -> None:
    """Write ``loader``'s configuration for ``entries`` (index 0 the default) into ``boot/loader.<B>/``.

    ``default_root`` is the default deployment's tree (U-Boot appends its ``uEnv.txt``).

    Raises:
        SysrootError: an entry without ``linux``, a syslinux label without ``KERNEL``, or a
            failing GRUB generator.
    """
    target = sysroot / f"boot/loader.{bootversion}" / _FILES[loader]
    if loader == "grub2":
        _grub2(sysroot, target, bootversion, entries)
        return
    if loader == "syslinux":
        text = syslinux_config(_read_current(sysroot / SYSLINUX_CFG), entries)
    else:
        text = uboot_config(entries, _system_uenv(default_root))
    _fs.write_atomic(target, text.encode(), fsync=False)  # flushed with the whole new boot version


def _read_current(path: Path) -> str:
    """The loader's current file, through its symlink to the current boot version ('' if none)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _join(lines: Sequence[str]) -> str:
    """Lines joined as ostree joins them: each ends with a newline; a leading empty line and
    every empty line after the first one are dropped (so the files are byte for byte ostree's)."""
    out = []
    seen_empty = False
    for i, line in enumerate(lines):
        if not line:
            if seen_empty or i == 0:
                continue
            seen_empty = True
        out.append(line + "\n")
    return "".join(out)


def _linux(entry: BlsEntry) -> str:
    linux = entry.get("linux")
    if not linux:
        raise SysrootError('No "linux" key in bootloader config')
    return linux


def syslinux_config(current: str, entries: Sequence[BlsEntry]) -> str:
    """The new ``syslinux.cfg``: ``current`` without ostree's labels, then one label per entry.

    Raises:
        SysrootError: a ``LABEL`` block without ``KERNEL``, or an entry without ``linux``.
    """
    out: list[str] = []
    block: list[str] = []
    kernel: str | None = None
    in_label = saw_default = regenerate_default = False
    lines = current.split("\n")
    for line in [*lines, None]:
        if in_label and (line is None or not line.startswith("\t")):
            in_label = False
            if kernel is None:
                raise SysrootError("No KERNEL argument found after LABEL")
            if not kernel.startswith(("/ostree/", "/boot/ostree/")):
                out.extend(block)  # somebody else's kernel: kept as it was
            block = []
        if line is None:
            break
        if not in_label and line.startswith("LABEL "):
            in_label, block, kernel = True, [], None
        elif in_label and line.startswith("\tKERNEL "):
            kernel = line[len("\tKERNEL ") :]
        elif not in_label and line.startswith("DEFAULT "):
            saw_default = True
            regenerate_default = line.startswith("DEFAULT ostree:") or "(ostree" in line
            continue
        (block if in_label else out).append(line)
    if not saw_default:
        regenerate_default = True
    for i, e in enumerate(entries):
        title = e.get("title") or "(Untitled)"
        if regenerate_default and i == 0:
            out.append(f"DEFAULT {title}")
        out.append(f"LABEL {title}")
        out.append(f"\tKERNEL /boot{_linux(e)}")
        for key, word in (("initrd", "INITRD"), ("devicetree", "DEVICETREE")):
            value = e.get(key)
            if value:
                out.append(f"\t{word} /boot{value}")
        if e.get("options"):
            out.append(f"\tAPPEND {e.get('options')}")
    return _join(out)


def uboot_config(entries: Sequence[BlsEntry], system_uenv: str | None) -> str:
    """The new ``uEnv.txt``: the entries' variables, then the default deployment's own ``uEnv.txt``.

    Raises:
        SysrootError: an entry without ``linux``.
    """
    out: list[str] = []
    for i, e in enumerate(entries):
        n = "" if i == 0 else str(i + 1)
        out.append(f"kernel_image{n}=/boot{_linux(e)}")
        for key, var in (("initrd", "ramdisk_image"), ("devicetree", "fdt_file"), ("fdtdir", "fdtdir")):
            value = e.get(key)
            if value:
                out.append(f"{var}{n}=/boot{value}")
        options = e.get("options")
        if options:
            out.append(f"bootargs{n}={options}")
            if i == 0 and system_uenv is not None:
                out.append(system_uenv)
    return _join(out)


def _system_uenv(root: Path | None) -> str | None:
    """``usr/lib/ostree-boot/uEnv.txt`` of the default deployment, read inside its tree."""
    if root is None:
        return None
    try:
        with _fs.Tree(root) as tree:
            data = tree.read_bytes("usr/lib/ostree-boot/uEnv.txt", in_root=True, limit=1 << 20)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise SysrootError(f"Reading usr/lib/ostree-boot/uEnv.txt of the default deployment: {e.strerror}") from e
    return data.decode("utf-8", errors="replace")


def grub2_menu(entries: Sequence[BlsEntry], boot_prefix: str) -> str:
    """``menuentry`` blocks for ``entries``, as ostree's ``ostree-grub-generator`` writes them.

    Raises:
        SysrootError: an entry without ``linux``.
    """
    out = ["# This file was generated by bootree from the boot loader entries. Do not modify it: it is",
           "# regenerated with every new boot version.",
           "serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1", "default=boot", "timeout=10", ""]
    for e in entries:
        title = (e.get("title") or "(Untitled)").replace("'", "'\\''")
        out.append(f"menuentry '{title}' {{")
        out.append(f"\t linux {boot_prefix}{_linux(e)} {Kargs.parse(e.get('options') or '')}")
        for key in ("initrd", "devicetree"):
            value = e.get(key)
            if value:
                out.append(f"\t {key} {boot_prefix}{value}")
        out.extend(["}", ""])
    return "\n".join(out) + "\n"


def _grub2(sysroot: Path, target: Path, bootversion: int, entries: Sequence[BlsEntry]) -> None:
    program = os.environ.get("OSTREE_GRUB2_EXEC")
    if not program:
        prefix = os.environ.get("OSTREE_BOOT_PARTITION", "/boot")
        _fs.write_atomic(target, grub2_menu(entries, prefix).encode(), fsync=False)
        return
    try:
        _run.run([program, "-o", target], env={"_OSTREE_GRUB2_BOOTVERSION": str(bootversion)})
    except ExternalCommandError as e:
        raise SysrootError(f"{program}: {e}") from e
    if not target.is_file():
        raise SysrootError(f"{program} did not write {target.relative_to(sysroot)}")
