"""composefs: commit → EROFS metadata image over the object store, and fs-verity (issue 14).

Layer: services (imports repo, format, _fs, _run, errors). The byte formats live in
:mod:`bootree.format.erofs`, :mod:`bootree.format.erofs_read`,
:mod:`bootree.format.composefs_dump` and :mod:`bootree.format.fsverity`; this package maps
commits onto them (:mod:`.image`), talks to the kernel's fs-verity ioctls (:mod:`.verity`),
checks a repository's images (:mod:`.check`) and mounts images (:mod:`.mount`).
"""

from bootree.composefs.image import (
    COMPOSEFS_DIGEST_KEY_V0,
    COMPOSEFS_NAME,
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
