"""Server side of the protocol: regenerating a repository's ``summary`` (``summary -u``).

Layer: pull. The operation is the repository's (:mod:`bootree.repo.summary`); these names stay
importable from here for existing callers.
"""

from __future__ import annotations

from bootree.repo.summary import delta_b64, update_summary

__all__ = ["delta_b64", "update_summary"]
