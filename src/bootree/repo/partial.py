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
from bootree.format.checksum import Checksum, is_checksum

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

    def mark(self, csum: Checksum, *, by_fsck: bool = False) -> None:
        """Durably mark ``csum`` partial (before its objects start arriving).

        ``by_fsck``: fsck found its objects missing or corrupt; ostree writes ``f`` into the
        marker then (and its fsck fails until a pull has completed the commit).
        """
        _fs.makedirs(self.state)
        _fs.write_atomic(self._path(csum), b"f" if by_fsck else b"", fsync=self.fsync)

    def by_fsck(self, csum: Checksum) -> bool:
        """Whether ``csum`` was marked partial by fsck."""
        try:
            return self._path(csum).read_bytes().startswith(b"f")
        except FileNotFoundError:
            return False

    def list(self) -> list[Checksum]:
        """The commits marked partial, sorted."""
        try:
            names = os.listdir(self.state)
        except FileNotFoundError:
            return []
        suffix = ".commitpartial"
        return sorted(Checksum(n.removesuffix(suffix)) for n in names
                      if n.endswith(suffix) and is_checksum(n.removesuffix(suffix)))

    def clear(self, csum: Checksum) -> None:
        """Remove the partial marker of ``csum``."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(csum))
