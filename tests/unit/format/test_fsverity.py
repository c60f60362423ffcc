"""fs-verity digests against `fsverity digest` vectors (shared/reference/composefs-erofs.md §4.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format.fsverity import FS_VERITY_HASH_ALG_SHA512, FsVerityHasher, descriptor, fsverity_digest


def _pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


VECTORS = [
    (b"", "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"),
    (b"hello\n", "9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa"),
    (bytes(4096), "babc284ee4ffe7f449377fbf6692715b43aec7bc39c094a95878904d34bac97e"),
    (bytes(4097), "093756e4ea9683329106d4a16982682ed182c14bf076463a9e7f97305cbac743"),
    (_pattern(4096 * 128), "d82861203d50ae9b60948504a704f35f5118bd229aeb1a22d6dae47b1767c4c4"),
    (_pattern(4096 * 129), "dd56ffe5de24c1229fe22d25f91db9e735f6adc921510dcf480094624458c92a"),
    (_pattern(1048576), "93c995656d665b81c3a87eed032fcf06a8f9cecef51e3f5e5af7fa59fef1d439"),
]


@pytest.mark.parametrize(("data", "expected"), VECTORS, ids=["empty", "hello", "zero4k", "zero4097", "p128", "p129", "p1m"])
def test_sha256_vectors(data: bytes, expected: str) -> None:
    assert fsverity_digest(data).hex() == expected


def test_variants() -> None:
    assert fsverity_digest(b"hello\n", block_size=1024).hex() == "ac222c4148153662c412613db5a9d88d7d4fdd3f171d11b3047ff31666dd1719"
    assert fsverity_digest(b"hello\n", salt=b"\0").hex() == "5c2f406af34ef2930c3e22a042e75b9d8644894264dd926d842d1790062e410b"
    assert fsverity_digest(b"", FS_VERITY_HASH_ALG_SHA512).hex().startswith("ccf9e5aea1c2a64efa2f2354a6024b90")
    assert fsverity_digest(b"hello\n", FS_VERITY_HASH_ALG_SHA512).hex().startswith("21fe275216d7dafb8afa8f8257ae9621")
    assert fsverity_digest(_pattern(1048576), FS_VERITY_HASH_ALG_SHA512).hex().startswith("41af04461110f14941d920ec99e22353")


def test_root_hash_and_descriptor() -> None:
    h = FsVerityHasher()
    h.update(b"hello\n")
    assert h.root_hash().hex() == "c173bcc93e6de18149b1c53a28b85e7a4f2f8fa61b7f6d8ff6998f4442e8e7c1"
    d = descriptor(h.root_hash(), 6)
    assert len(d) == 256 and d[:4] == bytes([1, 1, 12, 0])


def test_bad_parameters() -> None:
    with pytest.raises(FormatError):
        FsVerityHasher(7)
    with pytest.raises(FormatError):
        FsVerityHasher(block_size=3000)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=20000), st.lists(st.integers(0, 20000), max_size=5))
def test_streaming_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    """Any split of the input gives the same digest, and digest() may be called mid-stream."""
    h = FsVerityHasher(block_size=1024)
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        h.update(data[last:cut])
        assert h.digest() == fsverity_digest(data[:cut], block_size=1024)
        last = cut
    h.update(data[last:])
    assert h.digest() == fsverity_digest(data, block_size=1024)
