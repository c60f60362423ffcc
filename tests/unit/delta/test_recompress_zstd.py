"""zstd recompression (the zstandard package) and compression-aware bootree deltas of xz, zlib
and zstd objects: each is diffed uncompressed, rebuilt bit for bit on the client, and verified."""

from __future__ import annotations

import lzma
import os
import random
import zlib
from pathlib import Path

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.delta import DeltaOptions, apply_offline, generate_delta
from bootree.delta.recompress import decompress, find_params, recompress
from bootree.pull import pull_local
from bootree.repo import Repo, RepoMode
from builders import File, make_tree


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.sampled_from([1, 3, 7, 19]), st.booleans(), st.booleans())
def test_zstd_params_are_recovered(inner: bytes, level: int, checksum: bool, content_size: bool) -> None:
    data = zstandard.ZstdCompressor(level=level, write_checksum=checksum, write_content_size=content_size).compress(inner)
    params = find_params(data, inner)
    assert params is not None and recompress(inner, params) == data
    assert decompress(data, max_size=len(inner)) == inner
    mutated = bytearray(data)
    mutated[len(mutated) // 2] ^= 0x10
    wrong = find_params(bytes(mutated), inner)
    assert wrong is None or recompress(inner, wrong) == bytes(mutated)


def _text(seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    return b"".join(f"{i} {rnd.randrange(10**6)} module data\n".encode() for i in range(n))


def test_bootree_delta_recompresses_xz_zlib_and_zstd(tmp_path: Path) -> None:
    a, b, c = _text(1, 20000), _text(2, 20000), _text(3, 20000)
    zc = zstandard.ZstdCompressor(level=3, write_checksum=True)

    def tree(name: str, edit: bytes) -> Path:
        return make_tree(tmp_path / name, {
            "usr/lib/modules/6.1/mod.ko.xz": File(lzma.compress(a + edit, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)),
            "usr/share/data.zlib": File(zlib.compress(b + edit, 9)),
            "usr/lib/modules/6.1/other.ko.zst": File(zc.compress(c + edit)),
            "usr/bin/x": File(os.urandom(100)),
        })

    src = Repo.init(tmp_path / "src", mode=RepoMode.ARCHIVE)
    v1 = src.commit([tree("t1", b"")], branch="os", subject="v1", timestamp=1700000000)
    v2 = src.commit([tree("t2", b"one more line\n")], branch="os", subject="v2", timestamp=1700000100)
    out = tmp_path / "d" / "superblock"
    out.parent.mkdir()
    opts = DeltaOptions(min_fallback_size=0, format="bootree")
    res = generate_delta(src, v2, from_commit=v1, options=opts, filename=out)
    assert res.recompressed_objects == 3
    compat = generate_delta(src, v2, from_commit=v1, options=DeltaOptions(min_fallback_size=0))
    assert res.superblock.total_size * 3 < compat.superblock.total_size  # diffs of the contents win
    client = Repo.init(tmp_path / "client", mode=RepoMode.BARE_USER)
    pull_local(client, src.path, [v1])
    applied = apply_offline(client, out)
    assert applied.commit == v2 and client.fsck().ok
