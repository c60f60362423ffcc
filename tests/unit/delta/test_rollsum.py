"""Rolling-checksum chunking (bup's rollsum, vectorised) and chunk matching."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bootree.delta import rollsum
from bootree.delta.rollsum import chunk_ends, match_chunks


def _bupsplit_reference(data: bytes) -> list[int]:
    """bup's rollsum step by step (window 64, offset 31, 13 bits), rolling over the whole input."""
    s1, s2 = 64 * 31, 64 * 63 * 31
    window = [0] * 64
    ends = []
    for i, c in enumerate(data):
        drop = window[i % 64]
        s1 = (s1 + c - drop) & 0xFFFFFFFF
        s2 = (s2 + s1 - 64 * (drop + 31)) & 0xFFFFFFFF
        window[i % 64] = c
        if s2 & 0x1FFF == 0x1FFF:
            ends.append(i + 1)
    if not ends or ends[-1] != len(data):
        ends.append(len(data))
    return ends


def test_matches_the_step_by_step_rollsum_across_blocks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rollsum, "_BLOCK", 4096)  # many block boundaries
    data = random.Random(7).randbytes(300_000)
    assert chunk_ends(data) == _bupsplit_reference(data)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=3000))
def test_small_inputs(data: bytes) -> None:
    ends = chunk_ends(data)
    assert ends == (_bupsplit_reference(data) if data else [0])


def test_match_finds_shifted_content() -> None:
    rnd = random.Random(3)
    old = rnd.randbytes(400_000)
    new = old[:100_000] + b"inserted" + old[100_000:300_000] + rnd.randbytes(5000) + old[300_000:]
    res = match_chunks(old, new)
    assert res.match_ratio >= 90
    for m in res.matches:
        assert new[m.new_offset : m.new_offset + m.length] == old[m.old_offset : m.old_offset + m.length]
    assert res.matched_bytes > 350_000
    assert match_chunks(old, rnd.randbytes(100_000)).match_ratio == 0
