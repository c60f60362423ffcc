"""The C patcher path (bsdiff4) gives exactly what the pure decoder gives, and refuses the same bad patches."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.delta.bsdiff import bsdiff, bspatch
from bootree.errors import DeltaFormatError
from bootree.format.deltaops import apply_bsdiff

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_bspatch_rebuilds_the_new_data(old: bytes, new: bytes) -> None:
    patch = bsdiff(old, new)
    assert bspatch(old, patch, len(new)) == new == apply_bsdiff(old, patch, len(new))


@_SETTINGS
@given(st.binary(min_size=1, max_size=800), st.binary(min_size=1, max_size=800), st.integers(0, 10**6), st.integers(1, 255),
       st.integers(-3, 3))
def test_mutated_patches_agree_with_the_pure_decoder(old: bytes, new: bytes, pos: int, flip: int, size_delta: int) -> None:
    patch = bytearray(bsdiff(old, new))
    patch[pos % len(patch)] ^= flip
    size = max(0, len(new) + size_delta)
    try:
        expected: bytes | None = apply_bsdiff(old, bytes(patch), size)
    except DeltaFormatError:
        expected = None
    if expected is None:
        with pytest.raises(DeltaFormatError):
            bspatch(old, bytes(patch), size)
    else:
        assert bspatch(old, bytes(patch), size) == expected
