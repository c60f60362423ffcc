"""Repository storage: the ostree-compatible object store, refs, transactions, commit, checkout.

Layer: repo. Imports only :mod:`bootree.format`, :mod:`bootree._fs` and :mod:`bootree.errors`.
"""

from bootree.repo.checkout import CheckoutMode, CheckoutOptions
from bootree.repo.commit import CommitOptions
from bootree.repo.modes import RepoMode
from bootree.repo.repo import DiffEntry, Repo, TreeSource
from bootree.repo.transaction import Transaction
from bootree.repo.traverse import FsckProblem, FsckResult, PruneResult

__all__ = [
    "CheckoutMode",
    "CheckoutOptions",
    "CommitOptions",
    "DiffEntry",
    "FsckProblem",
    "FsckResult",
    "PruneResult",
    "Repo",
    "RepoMode",
    "Transaction",
    "TreeSource",
]
