"""Installing to a disk image, and the initramfs that boots a deployment from it.

Layer: install, above sysroot (beside health; neither imports the other). Modules:
:mod:`~bootree.install.initramfs` (busybox, modules, a prepare-root init),
:mod:`~bootree.install.disk` (GPT, FAT and ext4 images from directories, no loop devices) and
:mod:`~bootree.install.todisk` (``install to-disk``).
"""

from bootree.install.initramfs import InitramfsOptions, build_initramfs
from bootree.install.todisk import (
           ContentSource,
           InstallOptions,
           InstallResult,
           RepoSource,
           install_from,
           install_to_disk,
)

__all__ = ["ContentSource", "InitramfsOptions", "InstallOptions", "InstallResult", "RepoSource", "build_initramfs",
           "install_from", "install_to_disk"]
