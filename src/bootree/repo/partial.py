"""``state/<commit>.commitpartial`` markers: a commit whose tree may be incomplete.

Layer: repo. A pull marks a commit partial before its objects start arriving and clears the
mark when its transaction has published them all, as libostree does, so an interrupted pull is
resumed rather than trusted.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bootree import _fs
from bootree.format.checksum import Checksum

__all__ = ["PartialMarkers"]


class PartialMarkers:
    """The commitpartial markers of one repository."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.state = root / "state"
        self.fsync = fsync

    def _path(self, csum: Checksum) -> Path:
        return self.state / f"{csum}.commitpartial"

    def is_partial(self, csum: Checksum) -> bool:
        """Whether ``csum`` is marked as having an incomplete tree."""
        return self._path(csum).exists()

    def mark(self, csum: Checksum) -> None:
        """Durably mark ``csum`` partial (before its objects start arriving)."""
        _fs.makedirs(self.state)
        _fs.write_atomic(self._path(csum), b"", fsync=self.fsync)

    def clear(self, csum: Checksum) -> None:
        """Remove the partial marker of ``csum``."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(csum))
