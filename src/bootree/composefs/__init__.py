"""composefs: commit → EROFS metadata image over the object store, and fs-verity (issue 14).

Layer: services (imports repo, format, _fs, _run, errors). The byte formats live in
:mod:`bootree.format.erofs`, :mod:`bootree.format.erofs_read`,
:mod:`bootree.format.composefs_dump` and :mod:`bootree.format.fsverity`; this package maps
commits onto them (:mod:`.image`), talks to the kernel's fs-verity ioctls (:mod:`.verity`),
checks a repository's images (:mod:`.check`) and mounts images (:mod:`.mount`).

The image builder loads on first use (module ``__getattr__``): :mod:`bootree.sysroot` imports
this package for every deploy and ``status``, which need only :mod:`.names` unless a deployment
enables composefs (issue 9: 0.1 s of start-up).
"""

from typing import TYPE_CHECKING

from bootree.composefs.names import COMPOSEFS_DIGEST_KEY_V0, COMPOSEFS_NAME

if TYPE_CHECKING:
    from bootree.composefs.image import (
        ComposefsDigestMismatch,
        ComposefsImage,
        Verity,
        build_image,
        check_image,
        commit_digest,
        digest_metadata,
        object_payload,
        tree_image,
        tree_node,
    )

__all__ = [
    "COMPOSEFS_DIGEST_KEY_V0",
    "COMPOSEFS_NAME",
    "ComposefsDigestMismatch",
    "ComposefsImage",
    "Verity",
    "build_image",
    "check_image",
    "commit_digest",
    "digest_metadata",
    "object_payload",
    "tree_image",
    "tree_node",
]


def __getattr__(name: str) -> object:
    """The names of :mod:`.image`, imported on first use (see the module docstring)."""
    if name in __all__:
        from bootree.composefs import image

        return getattr(image, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
