"""Repository storage: the ostree-compatible object store, refs, transactions, commit, checkout.

Layer: repo. Imports only :mod:`bootree.format`, :mod:`bootree._fs` and :mod:`bootree.errors`.
"""

from bootree.repo.checkout import CheckoutMode, CheckoutOptions
from bootree.repo.commit import CommitOptions, SourceKind, TreeSource
from bootree.repo.diff import DiffEntry, DiffKind
from bootree.repo.modes import RepoMode
from bootree.repo.objectstore import ContentObject
from bootree.repo.reader import EntryKind, TreeEntry
from bootree.repo.repo import Repo
from bootree.repo.transaction import Transaction
from bootree.repo.traverse import FsckProblem, FsckResult, PruneResult

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
