"""Mounting a composefs image: EROFS (metadata) under an overlayfs with the objects as data layer.

Layer: composefs. The mount is two steps, as ``mount.composefs`` and ostree-prepare-root do:

1. the image is mounted read-only as EROFS (``mount -t erofs -o ro,loop``; ``noacl`` unless the
   image header says it holds ACLs);
2. an overlay stacks it on the object directory as a *data-only* lower layer
   (``lowerdir=EROFS::OBJECTS``, kernel ≥ 6.5), with ``redirect_dir=on,metacopy=on`` so the
   stubs' ``trusted.overlay.redirect`` and ``.metacopy`` xattrs are followed, and
   ``verity=require`` (kernel ≥ 6.6) when every object must match the fs-verity digest the image
   records; a read of a file whose object has no or another digest then fails with EIO.

Paths go into the option string, so they must not contain ``,`` ``:`` or ``=`` (the kernel has
no escaping that works across versions).
"""

from __future__ import annotations

import os
from pathlib import Path

from bootree import _run
from bootree.errors import BootreeError
from bootree.format.erofs import COMPOSEFS_FLAG_HAS_ACL, HEADER

__all__ = ["ComposefsMountError", "erofs_options", "mount_composefs", "overlay_options", "unmount"]


class ComposefsMountError(BootreeError):
    """A composefs image that could not be mounted."""


def _check_path(p: Path) -> str:
    s = os.fspath(p)
    if any(c in s for c in ",:=\n"):
        raise ComposefsMountError(f"path {s!r} cannot go into an overlay mount option")
    return s


def erofs_options(image: Path) -> str:
    """The EROFS mount options for an image (``noacl`` unless it has ACLs)."""
    with open(image, "rb") as f:
        _magic, _version, flags, _cfs = HEADER.unpack(f.read(HEADER.size))
    return "ro,loop" if flags & COMPOSEFS_FLAG_HAS_ACL else "ro,loop,noacl"


def overlay_options(lower: Path, objects: Path, *, verity_require: bool = False) -> str:
    """The overlay options that serve file data from ``objects`` behind the EROFS at ``lower``."""
    opts = f"ro,lowerdir={_check_path(lower)}::{_check_path(objects)},redirect_dir=on,metacopy=on"
    return opts + (",verity=require" if verity_require else "")


def mount_composefs(image: Path, objects: Path, target: Path, lower: Path, *, verity_require: bool = False) -> None:
    """Mount ``image`` at ``lower`` and the composefs tree at ``target`` (both directories exist).

    Raises:
        ComposefsMountError: if either mount fails (the EROFS one is undone then).
    """
    try:
        _run.run(["mount", "-t", "erofs", "-o", erofs_options(image), os.fspath(image), _check_path(lower)])
    except BootreeError as e:
        raise ComposefsMountError(f"cannot mount {image} as EROFS: {e}") from e
    try:
        _run.run(["mount", "-t", "overlay", "overlay", "-o", overlay_options(lower, objects, verity_require=verity_require), os.fspath(target)])
    except BootreeError as e:
        _run.run(["umount", os.fspath(lower)], check=False)
        raise ComposefsMountError(f"cannot mount the composefs overlay at {target}: {e}") from e


def unmount(target: Path, lower: Path) -> None:
    """Undo :func:`mount_composefs`."""
    _run.run(["umount", os.fspath(target)], check=False)
    _run.run(["umount", os.fspath(lower)], check=False)
