"""The names composefs deployments share with ostree, apart from the image code.

Layer: services. :mod:`bootree.sysroot` needs the image's file name on every ``status`` and
deploy, and the image builder (EROFS, fs-verity, a thread pool) only when a deployment enables
composefs; these constants live here so that the first does not load the second (issue 9).
"""

from __future__ import annotations

__all__ = ["COMPOSEFS_DIGEST_KEY_V0", "COMPOSEFS_NAME"]

#: Commit metadata key holding the image's fs-verity digest (``ay``, 32 bytes), as ostree names it.
COMPOSEFS_DIGEST_KEY_V0 = "ostree.composefs.digest.v0"
#: The image's name inside a deployment directory.
COMPOSEFS_NAME = ".ostree.cfs"
