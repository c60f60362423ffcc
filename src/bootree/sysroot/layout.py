"""Where things live in an ostree sysroot: pure path arithmetic, no I/O.

Layer: sysroot. Every path is relative to the sysroot root (a ``PurePosixPath``) so that the
same functions serve a real ``/`` and a directory sysroot in a test; callers join them onto
the sysroot path. The names are ostree 2022.7's (``ostree-format.md`` §9.1), because
``ostree admin`` must read what bootree writes and the other way round.

This module must not touch the filesystem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from bootree.errors import SysrootError
from bootree.format.checksum import Checksum, is_checksum

__all__ = [
    "BOOT_LINK",
    "LOADER_LINK",
    "LOADER_TMP_LINK",
    "REPO",
    "BootLink",
    "bootlink_path",
    "bootlink_target",
    "bootlinks_dir",
    "bootversion_link",
    "deploy_dir",
    "deploy_name",
    "deployment_ref",
    "deployments_dir",
    "entries_dir",
    "entry_filename",
    "kernel_dir",
    "kernel_dir_boot_relative",
    "loader_dir",
    "origin_path",
    "ostree_karg",
    "parse_deploy_name",
    "parse_ostree_karg",
    "stateroot_dir",
    "validate_stateroot",
    "var_dir",
]

REPO = PurePosixPath("ostree/repo")
#: ``boot/loader -> loader.<bootversion>``: the one symlink whose rename switches boot entries.
LOADER_LINK = PurePosixPath("boot/loader")
LOADER_TMP_LINK = PurePosixPath("boot/loader.tmp")
#: ``boot/boot -> .`` so that ``/boot/...`` paths work whether /boot is a partition or not.
BOOT_LINK = PurePosixPath("boot/boot")
DEPLOY_ROOT = PurePosixPath("ostree/deploy")

_STATEROOT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def validate_stateroot(name: str) -> str:
    """Check a stateroot (``--os``) name: it becomes a directory and a BLS file name part.

    Raises:
        SysrootError: for an empty name, one with ``/``, whitespace or a leading dot.
    """
    if not _STATEROOT.fullmatch(name):
        raise SysrootError(f"invalid stateroot name {name!r}")
    return name


def stateroot_dir(stateroot: str) -> PurePosixPath:
    """``ostree/deploy/<stateroot>``."""
    return DEPLOY_ROOT / stateroot


def var_dir(stateroot: str) -> PurePosixPath:
    """The stateroot's shared ``/var``."""
    return stateroot_dir(stateroot) / "var"


def deployments_dir(stateroot: str) -> PurePosixPath:
    """``ostree/deploy/<stateroot>/deploy``: one directory (plus ``.origin``) per deployment."""
    return stateroot_dir(stateroot) / "deploy"


def deploy_name(csum: str, deployserial: int) -> str:
    """``<csum>.<deployserial>``."""
    return f"{csum}.{deployserial}"


def parse_deploy_name(name: str) -> tuple[Checksum, int]:
    """Split ``<csum>.<serial>``.

    Raises:
        SysrootError: if ``name`` is not of that form.
    """
    csum, dot, serial = name.partition(".")
    if not dot or not is_checksum(csum) or not serial.isdigit():
        raise SysrootError(f"invalid deployment name {name!r}")
    return Checksum(csum), int(serial)


def deploy_dir(stateroot: str, csum: str, deployserial: int) -> PurePosixPath:
    """The deployment's root directory."""
    return deployments_dir(stateroot) / deploy_name(csum, deployserial)


def origin_path(stateroot: str, csum: str, deployserial: int) -> PurePosixPath:
    """The deployment's ``.origin`` keyfile, beside its directory."""
    return deployments_dir(stateroot) / f"{deploy_name(csum, deployserial)}.origin"


def loader_dir(bootversion: int) -> PurePosixPath:
    """``boot/loader.<bootversion>``."""
    return PurePosixPath(f"boot/loader.{bootversion}")


def entries_dir(bootversion: int) -> PurePosixPath:
    """``boot/loader.<bootversion>/entries``."""
    return loader_dir(bootversion) / "entries"


def entry_filename(position: int, stateroot: str) -> str:
    """``ostree-<k>-<stateroot>.conf`` where ``k`` = n_deployments − index."""
    return f"ostree-{position}-{stateroot}.conf"


def bootversion_link(bootversion: int) -> PurePosixPath:
    """``ostree/boot.<bootversion>`` (a symlink to ``boot.<B>.<S>``)."""
    return PurePosixPath(f"ostree/boot.{bootversion}")


def bootlinks_dir(bootversion: int, subbootversion: int) -> PurePosixPath:
    """``ostree/boot.<B>.<S>``: the symlink farm the ``ostree=`` karg resolves through."""
    return PurePosixPath(f"ostree/boot.{bootversion}.{subbootversion}")


def bootlink_path(bootversion: int, subbootversion: int, stateroot: str, bootcsum: str, bootserial: int) -> PurePosixPath:
    """One link of the farm: ``ostree/boot.B.S/<stateroot>/<bootcsum>/<bootserial>``."""
    return bootlinks_dir(bootversion, subbootversion) / stateroot / bootcsum / str(bootserial)


def bootlink_target(stateroot: str, csum: str, deployserial: int) -> str:
    """What a farm link points to, relative to the link: ``../../../deploy/<os>/deploy/<csum>.<serial>``."""
    return f"../../../deploy/{stateroot}/deploy/{deploy_name(csum, deployserial)}"


def ostree_karg(bootversion: int, stateroot: str, bootcsum: str, bootserial: int) -> str:
    """The value of ``ostree=`` for a deployment: ``/ostree/boot.B/<os>/<bootcsum>/<bootserial>``."""
    return f"/ostree/boot.{bootversion}/{stateroot}/{bootcsum}/{bootserial}"


@dataclass(frozen=True, slots=True)
class BootLink:
    """The parts of an ``ostree=`` argument."""

    bootversion: int
    stateroot: str
    bootcsum: str
    bootserial: int


_OSTREE_KARG = re.compile(r"/ostree/boot\.([01])/([^/]+)/([0-9a-f]{64})/([0-9]+)")


def parse_ostree_karg(value: str) -> BootLink:
    """Parse ``/ostree/boot.B/<os>/<bootcsum>/<bootserial>``.

    Raises:
        SysrootError: for any other shape.
    """
    m = _OSTREE_KARG.fullmatch(value)
    if not m:
        raise SysrootError(f"invalid ostree= boot argument {value!r}")
    return BootLink(int(m.group(1)), m.group(2), m.group(3), int(m.group(4)))


def kernel_dir(stateroot: str, bootcsum: str) -> PurePosixPath:
    """``boot/ostree/<os>-<bootcsum>``: kernels shared by deployments with equal bootcsum."""
    return PurePosixPath("boot/ostree") / f"{stateroot}-{bootcsum}"


def kernel_dir_boot_relative(stateroot: str, bootcsum: str) -> str:
    """The same directory as a BLS entry names it, relative to the /boot filesystem."""
    return f"/ostree/{stateroot}-{bootcsum}"


def deployment_ref(bootversion: int, subbootversion: int, index: int) -> str:
    """``ostree/<B>/<S>/<index>``: the repo ref that keeps a deployment's commit from pruning."""
    return f"ostree/{bootversion}/{subbootversion}/{index}"
