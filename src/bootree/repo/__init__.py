"""Repository storage: the ostree-compatible object store, refs, transactions, commit, checkout.

Layer: repo. Imports only :mod:`bootree.format`, :mod:`bootree._fs` and :mod:`bootree.errors`.
"""

from typing import TYPE_CHECKING

from bootree.repo.checkout import CheckoutMode, CheckoutOptions
from bootree.repo.modes import RepoMode
from bootree.repo.objectstore import ContentObject
from bootree.repo.reader import EntryKind, TreeEntry
from bootree.repo.repo import Repo
from bootree.repo.traverse import FsckProblem, FsckResult, PruneResult

if TYPE_CHECKING:
    from bootree.repo.commit import CommitOptions, SourceKind, TreeSource
    from bootree.repo.diff import DiffEntry, DiffKind
    from bootree.repo.transaction import Transaction

__all__ = [
    "CheckoutMode",
    "CheckoutOptions",
    "CommitOptions",
    "ContentObject",
    "DiffEntry",
    "DiffKind",
    "EntryKind",
    "FsckProblem",
    "FsckResult",
    "PruneResult",
    "Repo",
    "RepoMode",
    "SourceKind",
    "Transaction",
    "TreeEntry",
    "TreeSource",
]


def __getattr__(name: str) -> object:
    """``DiffEntry`` and ``DiffKind`` load :mod:`bootree.repo.diff` on first use, the commit
    names (``CommitOptions``, ``SourceKind``, ``TreeSource``) the commit builder and
    ``Transaction`` its module: a deploy or a status never diffs nor commits (a deploy's ref
    updates load the transaction when they run), and every command imports this package
    (issue 9: start-up cost)."""
    if name in ("DiffEntry", "DiffKind"):
        from bootree.repo import diff

        return getattr(diff, name)
    if name in ("CommitOptions", "SourceKind", "TreeSource"):
        from bootree.repo import commit

        return getattr(commit, name)
    if name == "Transaction":
        from bootree.repo import transaction

        return transaction.Transaction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
