"""ostree's repository test hooks: ``OSTREE_REPO_TEST_ERROR=pre-commit[,invalid-cache]``.

Layer: repo. libostree reads this variable when it opens a repository and fails on purpose at
the named points, so that its test suite can check what a failure leaves behind (for
``pre-commit``: a transaction that dies just before its commit point leaves its staging
directory, which a later transaction, or one of a later boot, must clean up). bootree honours
the same names so that those scripts, and ours, can drive the same points. Unset (the normal
case) a check costs one environment lookup.
"""

from __future__ import annotations

import os

from bootree.errors import InjectedTestError

__all__ = ["ENV", "KNOWN", "armed", "check"]

ENV = "OSTREE_REPO_TEST_ERROR"
#: The hook names ostree 2022.7 knows.
KNOWN = ("pre-commit", "invalid-cache")


def armed(name: str) -> bool:
    """Whether ``$OSTREE_REPO_TEST_ERROR`` (comma-separated names) includes ``name``."""
    value = os.environ.get(ENV)
    if not value:
        return False
    return name in {part.strip() for part in value.split(",")}


def check(name: str) -> None:
    """Fail here if the hook ``name`` is armed.

    Raises:
        InjectedTestError: with ostree's message, e.g. ``OSTREE_REPO_TEST_ERROR_PRE_COMMIT``.
    """
    if armed(name):
        raise InjectedTestError(f"OSTREE_REPO_TEST_ERROR_{name.upper().replace('-', '_')}")
