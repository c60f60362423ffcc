"""Repository modes: how content objects are laid out on disk.

Layer: repo. The mode is fixed when a repository is created (``[core] mode=`` in ``config``).
"""

from __future__ import annotations

from enum import StrEnum

from bootree.errors import RepoError

__all__ = ["RepoMode"]


class RepoMode(StrEnum):
    """The four modes libostree supports, valued by their ``config`` string."""

    BARE = "bare"
    """Content objects are the real files with real owner, mode and xattrs (needs root)."""
    BARE_USER = "bare-user"
    """Regular files; owner, mode and xattrs in the ``user.ostreemeta`` xattr."""
    BARE_USER_ONLY = "bare-user-only"
    """Real files and symlinks with canonical permissions; no owner or xattrs stored."""
    ARCHIVE = "archive"
    """zlib-compressed ``.filez`` objects; the only mode that can be served over HTTP."""

    @classmethod
    def parse(cls, value: str) -> RepoMode:
        """Parse a ``config`` mode string (``archive-z2`` is the historical name of archive).

        Raises:
            RepoError: for an unknown mode.
        """
        if value == "archive-z2":
            return cls.ARCHIVE
        try:
            return cls(value)
        except ValueError:
            raise RepoError(f"unsupported repository mode {value!r}") from None

    @property
    def config_value(self) -> str:
        """What ``ostree init`` writes for this mode (archive is written as ``archive-z2``)."""
        return "archive-z2" if self is RepoMode.ARCHIVE else self.value

    @property
    def is_bare(self) -> bool:
        """Whether content objects are stored uncompressed (so checkouts can hardlink them)."""
        return self is not RepoMode.ARCHIVE
