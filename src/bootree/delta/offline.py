"""``static-delta apply-offline``: apply a delta from files (a repository's ``deltas/`` or a USB stick).

Layer: delta. The argument is a superblock file; its parts are inline or beside it (``0``,
``1``, …), as ``ostree static-delta generate [--inline] --filename=F`` writes them. A part file
is read up to one byte past its declared size, so an oversized file is refused without being
read whole. Nothing is published unless the whole delta verifies (one transaction).
"""

from __future__ import annotations

from pathlib import Path

from bootree.delta.apply import ApplyResult, apply_delta
from bootree.errors import DeltaFormatError
from bootree.format.delta import PartEntry, Superblock
from bootree.repo import Repo

__all__ = ["apply_offline", "read_superblock_file"]

#: A superblock larger than this is refused (inline deltas carry their parts: allow a lot).
MAX_SUPERBLOCK_SIZE = 4 << 30


def read_superblock_file(path: Path) -> tuple[bytes, Superblock]:
    """A superblock file (or a delta directory holding ``superblock``) and its parsed value.

    Raises:
        DeltaFormatError: if it does not parse.
        OSError: if it cannot be read.
    """
    if path.is_dir():
        path = path / "superblock"
    with open(path, "rb") as f:
        data = f.read(MAX_SUPERBLOCK_SIZE + 1)
    if len(data) > MAX_SUPERBLOCK_SIZE:
        raise DeltaFormatError(f"{path}: superblock larger than {MAX_SUPERBLOCK_SIZE} bytes")
    return data, Superblock.from_bytes(data)


def apply_offline(repo: Repo, path: Path) -> ApplyResult:
    """Apply the delta whose superblock is ``path``; the ``to`` commit is written, no ref moves.

    Raises:
        DeltaFormatError, DeltaError, ChecksumMismatch: see :func:`bootree.delta.apply.apply_delta`.
    """
    _data, superblock = read_superblock_file(path)
    base = path if path.is_dir() else path.parent

    def load(index: int, entry: PartEntry) -> bytes:
        inline = superblock.inline_part(index)
        if inline is not None:
            return inline
        try:
            with open(base / str(index), "rb") as f:
                return f.read(entry.size + 1)
        except FileNotFoundError:
            raise DeltaFormatError(f"delta part {index} is missing ({base / str(index)})") from None

    with repo.transaction() as txn:
        return apply_delta(repo, txn, superblock, load)
