"""``apply-offline`` streams a superblock file: parts read by offset, piece by piece, never whole.

A damaged file is refused with one typed error and nothing is published: truncated, a framing
offset past its end, a part whose declared size or digest is wrong.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from bootree.cli import main
from bootree.delta import DeltaOptions, apply_offline, generate_delta
from bootree.delta import offline as offline_mod
from bootree.errors import DeltaFormatError
from bootree.format.delta import Superblock
from bootree.format.objects import ObjectType
from bootree.pull import pull_local
from bootree.repo import Repo, RepoMode
from delta_builders import Pair

SELF_CONTAINED = DeltaOptions(min_fallback_size=0, inline=True, max_chunk_size=100_000)


def _file(tmp_path: Path, pair: Pair) -> Path:
    path = tmp_path / "usb" / "update.delta"
    path.parent.mkdir(exist_ok=True)
    generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=SELF_CONTAINED, filename=path)
    return path


def _client(tmp_path: Path, pair: Pair) -> Repo:
    repo = Repo.init(tmp_path / f"client-{os.urandom(3).hex()}", mode=RepoMode.BARE_USER)
    pull_local(repo, pair.repo.path, [pair.v1])
    return repo


def _files(repo: Repo) -> set[str]:
    return {str(p.relative_to(repo.path)) for p in (repo.path / "objects").rglob("*") if p.is_file()}


def _refused(tmp_path: Path, pair: Pair, data: bytes, match: str) -> None:
    bad = tmp_path / f"bad-{os.urandom(3).hex()}.delta"
    bad.write_bytes(data)
    client = _client(tmp_path, pair)
    before = _files(client)
    with pytest.raises(DeltaFormatError, match=match):
        apply_offline(client, bad)
    assert _files(client) == before and not client.has_object(ObjectType.COMMIT, pair.v2)


def test_inline_parts_are_read_in_pieces(tmp_path: Path, pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path, pair)
    sb = Superblock.from_bytes(path.read_bytes())
    assert len(sb.parts) > 1 and all(sb.inline_part(i) is not None for i in range(len(sb.parts)))
    reads: list[int] = []
    real = offline_mod._pread_chunks

    def spy(p: Path, offset: int, length: int) -> object:
        reads.append(length)
        return real(p, offset, length)

    monkeypatch.setattr(offline_mod, "READ_CHUNK", 4096)  # many pieces per part
    monkeypatch.setattr(offline_mod, "_pread_chunks", spy)
    client = _client(tmp_path, pair)
    res = apply_offline(client, path)
    assert res.commit == pair.v2 and res.parts_applied == len(sb.parts) and client.fsck().ok
    assert sorted(reads) == sorted(p.size for p in sb.parts)  # each part read once, by its span


def test_truncated_file_is_refused(tmp_path: Path, pair: Pair) -> None:
    data = _file(tmp_path, pair).read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 100):
        _refused(tmp_path, pair, data[:cut], "superblock|truncated|delta part")


def test_offset_past_the_end_is_refused(tmp_path: Path, pair: Pair) -> None:
    data = _file(tmp_path, pair).read_bytes()
    w = 4 if len(data) > 0xFFFF else 2
    # the superblock's last framing offset (the end of its metadata, where the parts are)
    _refused(tmp_path, pair, data[:-w] + (len(data) + 4096).to_bytes(w, "little"), "out of range")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda e: replace(e, size=e.size + 1), r"is \d+ bytes, the superblock says"),
        (lambda e: replace(e, size=e.size - 1), r"is \d+ bytes, the superblock says"),
        (lambda e: replace(e, checksum=bytes(32)), "wrong checksum"),
        (lambda e: replace(e, uncompressed_size=0, size=e.size), None),
    ],
)
def test_declared_sizes_must_match(tmp_path: Path, pair: Pair, change: object, match: str | None) -> None:
    data = _file(tmp_path, pair).read_bytes()
    sb = Superblock.from_bytes(data)
    assert callable(change)
    bad = replace(sb, parts=(change(sb.parts[0]), *sb.parts[1:]))
    if match is None:
        # a part whose objects are declared to weigh nothing may decompress to 16 MiB at most:
        # small parts still apply (the limit guards memory, the digests guard the bytes)
        client = _client(tmp_path, pair)
        path = tmp_path / "ok.delta"
        path.write_bytes(bad.to_bytes())
        assert apply_offline(client, path).commit == pair.v2
        return
    _refused(tmp_path, pair, bad.to_bytes(), match)


def test_cli_prints_one_error_line(tmp_path: Path, pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    data = _file(tmp_path, pair).read_bytes()
    bad = tmp_path / "cut.delta"
    bad.write_bytes(data[: len(data) // 2])
    client = _client(tmp_path, pair)
    capsys.readouterr()
    assert main([f"--repo={client.path}", "static-delta", "apply-offline", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
