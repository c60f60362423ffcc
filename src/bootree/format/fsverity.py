"""The fs-verity file digest, computed in software over hashlib.

Layer: format (pure). composefs names the metadata image by its fs-verity digest (the "composefs
digest" ostree stores as ``ostree.composefs.digest.v0``), and records each backing object's
fs-verity digest in ``trusted.overlay.metacopy`` so overlayfs can check it with ``verity=require``.
On kernels or file systems without fs-verity we still need those values, so they are computed
here exactly as the kernel does (Documentation/filesystems/fsverity.rst):

* split the data into blocks (zero-padding the last), hash each one: level 0;
* hash the concatenated hashes of a level in blocks again until one hash remains (the root);
  an empty file's root hash is all zeros;
* the file digest is the hash of the 256-byte ``fsverity_descriptor`` that holds the root hash.

:class:`FsVerityHasher` streams: it keeps one partial block per tree level, so hashing a large
object needs O(depth) memory.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from bootree.errors import FormatError

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "FS_VERITY_HASH_ALG_SHA256",
    "FS_VERITY_HASH_ALG_SHA512",
    "FsVerityHasher",
    "descriptor",
    "fsverity_digest",
]

FS_VERITY_HASH_ALG_SHA256 = 1
FS_VERITY_HASH_ALG_SHA512 = 2

_ALGS = {FS_VERITY_HASH_ALG_SHA256: ("sha256", 32, 64), FS_VERITY_HASH_ALG_SHA512: ("sha512", 64, 128)}


class FsVerityHasher:
    """Incremental fs-verity digest: ``update()`` with the file's bytes, then ``digest()``.

    ``block_size`` is the Merkle tree block size (4096 for composefs and ostree); ``salt`` is
    optional (composefs uses none). The hash algorithm is SHA-256 or SHA-512.
    """

    def __init__(
        self, algorithm: int = FS_VERITY_HASH_ALG_SHA256, *, block_size: int = 4096, salt: bytes = b""
    ) -> None:
        if algorithm not in _ALGS:
            raise FormatError(f"unknown fs-verity hash algorithm {algorithm}")
        if block_size < 1024 or block_size > 65536 or block_size & (block_size - 1):
            raise FormatError(f"invalid fs-verity block size {block_size}")
        if len(salt) > 32:
            raise FormatError("fs-verity salt longer than 32 bytes")
        self.algorithm = algorithm
        self.block_size = block_size
        self.salt = salt
        name, self._digest_size, pad = _ALGS[algorithm]
        self._name = name
        self._salt_prefix = salt + b"\0" * (-len(salt) % pad) if salt else b""
        # The constructor itself (hashlib.new(name) is slower per call), and a hash of the salt
        # that every block's hash starts from.
        self._new: Callable[[bytes | memoryview], _Hash] = hashlib.sha256 if name == "sha256" else hashlib.sha512
        self._base = self._new(self._salt_prefix)
        # _levels[i]: the pending (not yet full) block of level-i hashes.
        self._levels: list[bytearray] = []
        self._pending = bytearray()  # data not yet forming a full block
        self._size = 0

    def _hash_block(self, block: bytes | bytearray | memoryview) -> bytes:
        h = self._base.copy()
        h.update(block)
        digest: bytes = h.digest()
        return digest

    def _push(self, levels: list[bytearray], level: int, digests: bytes) -> None:
        # Append hashes to a level; each level block that fills up is hashed into the next level.
        bs = self.block_size
        while digests:
            if level == len(levels):
                levels.append(bytearray())
            buf = levels[level]
            buf += digests
            full = len(buf) // bs * bs
            if not full:
                return
            view = memoryview(buf)
            digests = b"".join([self._hash_block(view[o : o + bs]) for o in range(0, full, bs)])
            view.release()
            del buf[:full]
            level += 1

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the file.

        Whole blocks are hashed in one list comprehension and their digests pushed up the tree
        together: one Python step per 4 KiB block, the rest in hashlib (which releases the GIL,
        so files hashed on several threads use several cores).
        """
        bs = self.block_size
        view = memoryview(data)
        self._size += len(view)
        if self._pending:
            need = bs - len(self._pending)
            self._pending += view[:need]
            view = view[need:]
            if len(self._pending) < bs:
                return
            self._push(self._levels, 0, self._hash_block(self._pending))
            self._pending.clear()
        n_full = len(view) // bs * bs
        if n_full:
            if self._salt_prefix:
                hash_block = self._hash_block
                digests = b"".join([hash_block(view[o : o + bs]) for o in range(0, n_full, bs)])
            else:
                new = self._new
                digests = b"".join([new(view[o : o + bs]).digest() for o in range(0, n_full, bs)])
            self._push(self._levels, 0, digests)
        self._pending += view[n_full:]

    def root_hash(self) -> bytes:
        """The Merkle tree root (all zeros for an empty file)."""
        if self._size == 0:
            return b"\0" * self._digest_size
        bs = self.block_size
        levels = [bytearray(b) for b in self._levels]  # finish on a copy: update() may go on
        if self._pending:
            self._push(levels, 0, self._hash_block(bytes(self._pending) + b"\0" * (bs - len(self._pending))))
        per_block = bs // self._digest_size
        count = -(-self._size // bs)  # hashes at level 0: one per data block
        level = 0
        while count > 1:
            buf = levels[level]
            if buf:  # the last, partial block of this level
                digest = self._hash_block(bytes(buf) + b"\0" * (bs - len(buf)))
                buf.clear()
                self._push(levels, level + 1, digest)
            count = -(-count // per_block)
            level += 1
        return bytes(levels[level][: self._digest_size])

    def digest(self) -> bytes:
        """The fs-verity file digest (``FS_IOC_MEASURE_VERITY``'s value)."""
        return hashlib.new(
            self._name, descriptor(self.root_hash(), self._size, self.algorithm, self.block_size, self.salt)
        ).digest()

    def hexdigest(self) -> str:
        return self.digest().hex()


def descriptor(
    root_hash: bytes,
    data_size: int,
    algorithm: int = FS_VERITY_HASH_ALG_SHA256,
    block_size: int = 4096,
    salt: bytes = b"",
) -> bytes:
    """The 256-byte ``struct fsverity_descriptor`` whose hash is the file digest."""
    return struct.pack(
        "<BBBB4xQ64s32s144x",
        1,
        algorithm,
        block_size.bit_length() - 1,
        len(salt),
        data_size,
        root_hash,
        salt,
    )


def fsverity_digest(
    data: bytes | bytearray | memoryview,
    algorithm: int = FS_VERITY_HASH_ALG_SHA256,
    *,
    block_size: int = 4096,
    salt: bytes = b"",
) -> bytes:
    """The fs-verity digest of ``data`` (SHA-256, 4 KiB blocks, no salt by default)."""
    h = FsVerityHasher(algorithm, block_size=block_size, salt=salt)
    h.update(data)
    return h.digest()
