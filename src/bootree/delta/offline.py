"""``static-delta apply-offline``: apply a delta from files (a repository's ``deltas/`` or a USB stick).

Layer: delta. The argument is a superblock file, plain or signed; its parts are inline or beside
it (``0``, ``1``, …), as ``ostree static-delta generate [--inline] --filename=F`` writes them.
An *offline update file* is the self-contained case: one signed superblock with every part
inline and no fallback objects, so it carries the commit, its detached metadata and every new
object (``static-delta generate --inline --min-fallback-size=0 --sign=KEY --filename=F``).

A part file is read up to one byte past its declared size, so an oversized file is refused
without being read whole. Signatures are checked, when the caller gives a check, before any
part is read; nothing is published unless the whole delta verifies (one transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bootree.delta.apply import ApplyResult, apply_delta
from bootree.errors import DeltaError, DeltaFormatError
from bootree.format.delta import PartEntry, SignedSuperblock, Superblock
from bootree.repo import Repo

__all__ = ["SignatureCheck", "apply_offline", "apply_superblock", "check_superblock_signature", "read_superblock_file"]

#: A superblock larger than this is refused (inline deltas carry their parts: allow a lot).
MAX_SUPERBLOCK_SIZE = 4 << 30

#: Checks a signed superblock file's signatures (given the file's bytes); raises to refuse.
SignatureCheck = Callable[[bytes], object]


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


def apply_offline(
    repo: Repo,
    path: Path,
    *,
    check_signature: SignatureCheck | None = None,
    require_signature: bool = False,
) -> ApplyResult:
    """Apply the delta whose superblock is ``path``; the ``to`` commit is written, no ref moves.

    See :func:`apply_superblock`; the file is read once, and those bytes are checked and applied.
    """
    data, superblock = read_superblock_file(path)
    return apply_superblock(
        repo, data, path if path.is_dir() else path.parent,
        check_signature=check_signature, require_signature=require_signature, what=str(path), parsed=superblock,
    )


def check_superblock_signature(repo: Repo, data: bytes, *, check_signature: SignatureCheck | None = None,
                               require_signature: bool = False, what: str = "the delta") -> None:
    """libostree's rule for a superblock file's signatures, before any part is read.

    A signed superblock is checked with ``check_signature`` when one is given; without one it
    is refused when the repository sets ``core.sign-verify-deltas``. With ``require_signature``
    an unsigned one is refused as well.

    Raises:
        SignatureError: from ``check_signature``.
        DeltaError: a signature is required but cannot be checked, or is missing.
    """
    signed = SignedSuperblock.from_bytes(data)
    if signed is not None and signed.engines:
        if check_signature is not None:
            check_signature(data)
        elif require_signature or repo.config.get_bool("core", "sign-verify-deltas", False):
            raise DeltaError("Key is mandatory to check delta signature",
                             hint="give the publisher's public key (--keys-file=FILE, --keys-dir=DIR or KEY arguments)")
    elif require_signature:
        raise DeltaError(f"{what} is not signed, but a signed delta is required")


def apply_superblock(
    repo: Repo,
    data: bytes,
    base: Path,
    *,
    check_signature: SignatureCheck | None = None,
    require_signature: bool = False,
    what: str = "the delta",
    parsed: Superblock | None = None,
) -> ApplyResult:
    """Apply the superblock file ``data`` (its parts inline or in directory ``base``).

    A signed superblock is checked with ``check_signature`` when one is given; without one it
    is refused when the repository sets ``core.sign-verify-deltas`` (libostree's rule). With
    ``require_signature`` an unsigned delta is refused as well. ``parsed`` is ``data`` already
    parsed (an inline delta's superblock is the whole delta: it is not parsed twice).

    Raises:
        SignatureError: from ``check_signature``.
        DeltaError: a signature is required but cannot be checked, or the delta's source
            commit is not in the repository.
        DeltaFormatError, ChecksumMismatch: see :func:`bootree.delta.apply.apply_delta`.
    """
    superblock = parsed if parsed is not None else Superblock.from_bytes(data)
    check_superblock_signature(repo, data, check_signature=check_signature, require_signature=require_signature,
                               what=what)

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
