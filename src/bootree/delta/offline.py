"""``static-delta apply-offline``: apply a delta from files (a repository's ``deltas/`` or a USB stick).

Layer: delta. The argument is a superblock file, plain or signed; its parts are inline or beside
it (``0``, ``1``, …), as ``ostree static-delta generate [--inline] --filename=F`` writes them.
An *offline update file* is the self-contained case: one signed superblock with every part
inline and no fallback objects, so it carries the commit, its detached metadata and every new
object (``static-delta generate --inline --min-fallback-size=0 --sign=KEY --filename=F``).

The file is never read whole to be applied (:func:`open_superblock_file`): its framing is
walked (:mod:`bootree.format.deltascan`), and each part, inline or beside it, is read in pieces
by offset, hashed and decompressed as it comes and dropped once applied; a part file is read up
to one byte past its declared size, so an oversized one is refused without being read whole.
Only a signed file whose signatures are checked is read whole once: the signature covers the
superblock's bytes, and the values applied are taken from exactly the bytes checked. Signatures
are checked before any part is read; nothing is published unless the whole delta verifies (one
transaction).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from bootree.delta.apply import ApplyResult, apply_delta
from bootree.errors import DeltaError, DeltaFormatError
from bootree.format.delta import PartEntry, SignedSuperblock, Superblock
from bootree.format.deltascan import ScannedSuperblock, scan_superblock
from bootree.repo import Repo

__all__ = [
    "SignatureCheck",
    "SuperblockFile",
    "apply_offline",
    "apply_superblock",
    "apply_superblock_file",
    "check_superblock_signature",
    "open_superblock_file",
    "read_superblock_file",
]

#: A superblock larger than this is refused (inline deltas carry their parts: allow a lot).
MAX_SUPERBLOCK_SIZE = 4 << 30
#: Bytes of a part read, hashed and decompressed at a time.
READ_CHUNK = 1 << 20

#: Checks a signed superblock file's signatures (given the file's bytes); raises to refuse.
SignatureCheck = Callable[[bytes], object]


def _superblock_path(path: Path) -> Path:
    return path / "superblock" if path.is_dir() else path


def read_superblock_file(path: Path) -> tuple[bytes, Superblock]:
    """A superblock file (or a delta directory holding ``superblock``) and its parsed value.

    The whole file is read (``static-delta show`` and ``verify`` want its bytes); applying one
    uses :func:`open_superblock_file`, which does not.

    Raises:
        DeltaFormatError: if it does not parse.
        OSError: if it cannot be read.
    """
    path = _superblock_path(path)
    with open(path, "rb") as f:
        data = f.read(MAX_SUPERBLOCK_SIZE + 1)
    if len(data) > MAX_SUPERBLOCK_SIZE:
        raise DeltaFormatError(f"{path}: superblock larger than {MAX_SUPERBLOCK_SIZE} bytes")
    return data, Superblock.from_bytes(data)


def _pread_chunks(path: Path, offset: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of ``path`` from ``offset``, :data:`READ_CHUNK` at a time (fewer at its end)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        end = offset + length
        while offset < end:
            chunk = os.pread(fd, min(READ_CHUNK, end - offset), offset)
            if not chunk:
                return
            offset += len(chunk)
            yield chunk
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class SuperblockFile:
    """A superblock file opened for applying: its parsed superblock and where its parts are.

    ``verified`` is set once :meth:`checked` has checked its signatures (the values are then
    those of the bytes checked).
    """

    path: Path
    base: Path  # the directory of parts that are not inline
    scan: ScannedSuperblock
    verified: bool = False

    @property
    def superblock(self) -> Superblock:
        """The superblock (inline parts are not in its metadata: see :meth:`load_part`)."""
        return self.scan.superblock

    @property
    def signed(self) -> bool:
        """Whether the file is a signed superblock with at least one signature."""
        return self.scan.signed

    def read_bytes(self) -> bytes:
        """The whole file (what a signature check reads).

        Raises:
            DeltaFormatError: larger than :data:`MAX_SUPERBLOCK_SIZE`.
        """
        with open(self.path, "rb") as f:
            data = f.read(MAX_SUPERBLOCK_SIZE + 1)
        if len(data) > MAX_SUPERBLOCK_SIZE:
            raise DeltaFormatError(f"{self.path}: superblock larger than {MAX_SUPERBLOCK_SIZE} bytes")
        return data

    def checked(self, check: SignatureCheck) -> SuperblockFile:
        """This file with its signatures checked by ``check`` (which raises to refuse), its
        values re-read from the very bytes checked (the file may change between two reads).

        Raises:
            SignatureError: from ``check``.
            DeltaFormatError: if the bytes checked do not parse.
        """
        data = self.read_bytes()
        check(data)
        view = memoryview(data)
        scan = scan_superblock(lambda off, n: bytes(view[off : off + n]), len(data))
        return replace(self, scan=scan, verified=True)

    def load_part(self, index: int, entry: PartEntry) -> Iterator[bytes]:
        """Part ``index`` in pieces: from inside the superblock file if inline, else from
        ``base/<index>`` (one byte past its declared size at most).

        Raises:
            DeltaFormatError: if a part that is not inline is missing.
        """
        span = self.scan.inline.get(index)
        if span is not None:
            return _pread_chunks(self.path, *span)
        part = self.base / str(index)
        if not part.is_file():
            raise DeltaFormatError(f"delta part {index} is missing ({part})")
        return _pread_chunks(part, 0, entry.size + 1)


def open_superblock_file(path: Path) -> SuperblockFile:
    """Open a superblock file (or a delta directory holding ``superblock``) without reading it whole.

    Raises:
        DeltaFormatError: if it does not parse (truncated, offsets past its end, malformed).
        OSError: if it cannot be read.
    """
    sb_path = _superblock_path(path)
    fd = os.open(sb_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_SUPERBLOCK_SIZE:
            raise DeltaFormatError(f"{sb_path}: superblock larger than {MAX_SUPERBLOCK_SIZE} bytes")
        scan = scan_superblock(lambda off, n: os.pread(fd, n, off), size)
    finally:
        os.close(fd)
    return SuperblockFile(sb_path, sb_path.parent, scan)


def apply_offline(
    repo: Repo,
    path: Path,
    *,
    check_signature: SignatureCheck | None = None,
    require_signature: bool = False,
) -> ApplyResult:
    """Apply the delta whose superblock is ``path``; the ``to`` commit is written, no ref moves.

    See :func:`apply_superblock_file`.
    """
    return apply_superblock_file(
        repo, open_superblock_file(path), check_signature=check_signature,
        require_signature=require_signature, what=str(path),
    )


def apply_superblock_file(
    repo: Repo,
    sbf: SuperblockFile,
    *,
    check_signature: SignatureCheck | None = None,
    require_signature: bool = False,
    what: str = "the delta",
) -> ApplyResult:
    """Apply an opened superblock file, its parts streamed from disk one at a time.

    A signed superblock is checked with ``check_signature`` when one is given (unless
    :meth:`SuperblockFile.checked` did already); without one it is refused when the repository
    sets ``core.sign-verify-deltas`` (libostree's rule). With ``require_signature`` an unsigned
    delta is refused as well.

    Raises:
        SignatureError: from ``check_signature``.
        DeltaError: a signature is required but cannot be checked, or the delta's source
            commit is not in the repository.
        DeltaFormatError, ChecksumMismatch: see :func:`bootree.delta.apply.apply_delta`.
    """
    if sbf.signed and not sbf.verified:
        if check_signature is not None:
            sbf = sbf.checked(check_signature)
        elif require_signature or repo.config.get_bool("core", "sign-verify-deltas", False):
            raise DeltaError("Key is mandatory to check delta signature",
                             hint="give the publisher's public key (--keys-file=FILE, --keys-dir=DIR or KEY arguments)")
    elif not sbf.signed and require_signature:
        raise DeltaError(f"{what} is not signed, but a signed delta is required")
    with repo.transaction() as txn:
        return apply_delta(repo, txn, sbf.superblock, sbf.load_part)


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
    """Apply the superblock file ``data`` held in memory (its parts inline or in directory ``base``).

    Signatures as :func:`apply_superblock_file`. ``parsed`` is ``data`` already parsed (an
    inline delta's superblock is the whole delta: it is not parsed twice).

    Raises:
        SignatureError, DeltaError, DeltaFormatError, ChecksumMismatch: as
            :func:`apply_superblock_file`.
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
