"""ostree's sysroot debug switches: ``OSTREE_SYSROOT_DEBUG=flag[,flag...]``.

Layer: sysroot (private). libostree reads the variable when it opens a sysroot; bootree honours
the same names where it has the behaviour they change, so that scripts written for ostree (its
test suite among them) drive bootree the same way:

* ``mutable-deployments``: deployment roots are not made immutable (``chattr +i``);
* ``no-dtb``: deployments ignore device trees (``devicetree``, ``dtb/``) of their kernel;
* ``test-fifreeze``: the freeze/thaw of ``/boot`` runs its watchdog, then fails (``_fs.freeze``).
"""

from __future__ import annotations

import os

__all__ = ["ENV", "enabled"]

ENV = "OSTREE_SYSROOT_DEBUG"


def enabled(flag: str) -> bool:
    """Whether ``$OSTREE_SYSROOT_DEBUG`` (comma-separated) names ``flag``."""
    return flag in {part.strip() for part in os.environ.get(ENV, "").split(",")}
