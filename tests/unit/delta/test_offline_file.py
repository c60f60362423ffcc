"""Offline update files: one signed, self-contained file applied without a network.

A wrong signature, a missing source commit or ``core.sign-verify-deltas`` without a key are
each refused before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootree.delta import DeltaOptions, apply_offline, generate_delta
from bootree.delta.offline import SignatureCheck
from bootree.errors import DeltaError, SignatureError
from bootree.format.delta import SignedSuperblock, Superblock
from bootree.pull import pull_local
from bootree.repo import Repo, RepoMode
from bootree.sign import SecretKey, Verifier
from bootree.sign.delta import sign_superblock, verify_superblock
from delta_builders import Pair

KEY = SecretKey.from_seed(bytes(range(32)))
OTHER = SecretKey.from_seed(bytes(range(1, 33)))
SELF_CONTAINED = DeltaOptions(min_fallback_size=0, inline=True)


def _file(tmp_path: Path, pair: Pair, key: SecretKey = KEY, *, base: bool = True) -> Path:
    path = tmp_path / "usb" / "update.delta"
    path.parent.mkdir(exist_ok=True)
    generate_delta(pair.repo, pair.v2, from_commit=pair.v1 if base else None, options=SELF_CONTAINED, filename=path,
                   sign=lambda data: sign_superblock(data, ed25519_keys=[key]))
    return path


def _client(tmp_path: Path, pair: Pair, *, with_v1: bool = True) -> Repo:
    repo = Repo.init(tmp_path / f"client-{os.urandom(3).hex()}", mode=RepoMode.BARE_USER)
    if with_v1:
        pull_local(repo, pair.repo.path, [pair.v1])
    return repo


def _check(key: SecretKey) -> SignatureCheck:
    verifier = Verifier(ed25519=(key.public,))
    return lambda data: verify_superblock("offline update file", data, verifier=verifier)


def _files(repo: Repo) -> set[str]:
    return {str(p.relative_to(repo.path)) for p in (repo.path / "objects").rglob("*") if p.is_file()}


def test_one_signed_file_carries_everything(tmp_path: Path, pair: Pair) -> None:
    path = _file(tmp_path, pair)
    assert sorted(p.name for p in path.parent.iterdir()) == ["update.delta"]  # one file, parts inline
    data = path.read_bytes()
    signed = SignedSuperblock.from_bytes(data)
    assert signed is not None and signed.engines == ("ed25519",)
    sb = Superblock.from_bytes(data)
    assert not sb.fallbacks and all(sb.inline_part(i) is not None for i in range(len(sb.parts)))
    client = _client(tmp_path, pair)
    res = apply_offline(client, path, check_signature=_check(KEY))
    assert res.commit == pair.v2 and client.fsck().ok
    assert client.read_commitmeta(pair.v2) == pair.repo.read_commitmeta(pair.v2)


def test_wrong_key_and_missing_source_are_refused_unwritten(tmp_path: Path, pair: Pair) -> None:
    client = _client(tmp_path, pair)
    before = _files(client)
    with pytest.raises(SignatureError):
        apply_offline(client, _file(tmp_path, pair, OTHER), check_signature=_check(KEY))
    assert _files(client) == before
    empty = _client(tmp_path, pair, with_v1=False)
    with pytest.raises(DeltaError, match="source commit"):
        apply_offline(empty, _file(tmp_path, pair), check_signature=_check(KEY))
    assert _files(empty) == set()


def test_sign_verify_deltas_needs_a_key(tmp_path: Path, pair: Pair) -> None:
    client = _client(tmp_path, pair)
    client.config.set("core", "sign-verify-deltas", "true")
    client.save_config()
    client = Repo.open(client.path)
    with pytest.raises(DeltaError, match="Key is mandatory"):
        apply_offline(client, _file(tmp_path, pair))
    with pytest.raises(DeltaError, match="not signed"):  # require_signature: unsigned refused
        path = tmp_path / "plain.delta"
        generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=SELF_CONTAINED, filename=path)
        apply_offline(client, path, require_signature=True)


def test_a_tampered_inline_part_fails_its_signature(tmp_path: Path, pair: Pair) -> None:
    path = _file(tmp_path, pair)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1  # inside the signed superblock (parts are inline)
    path.write_bytes(bytes(data))
    client = _client(tmp_path, pair)
    before = _files(client)
    with pytest.raises(SignatureError):
        apply_offline(client, path, check_signature=_check(KEY))
    assert _files(client) == before


def test_cli_generates_verifies_and_applies_a_signed_file(
    tmp_path: Path, pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    from bootree.cli import main

    secret = tmp_path / "secret.ed25519"
    secret.write_text(KEY.base64 + "\n")
    public = tmp_path / "public.ed25519"
    public.write_text(KEY.public.base64 + "\n")
    wrong = tmp_path / "wrong.ed25519"
    wrong.write_text(OTHER.public.base64 + "\n")
    out = tmp_path / "stick" / "update.delta"
    out.parent.mkdir()
    repo = f"--repo={pair.repo.path}"
    assert main([repo, "static-delta", "generate", f"--from={pair.v1}", f"--to={pair.v2}", "--self-contained",
                 f"--sign={secret}", f"--filename={out}"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["update.delta"]
    capsys.readouterr()
    assert main([repo, "static-delta", "verify", str(out), KEY.public.base64]) == 0
    assert "Verification OK" in capsys.readouterr().out
    assert main([repo, "static-delta", "verify", f"--keys-file={wrong}", str(out)]) == 1
    captured = capsys.readouterr()
    assert "Verification fails" in captured.out and captured.err.startswith("error: ")
    client = _client(tmp_path, pair)
    before = _files(client)
    assert main([f"--repo={client.path}", "static-delta", "apply-offline", f"--keys-file={wrong}", str(out)]) == 1
    assert _files(client) == before
    assert main([f"--repo={client.path}", "static-delta", "apply-offline", f"--keys-file={public}", str(out)]) == 0
    assert client.fsck().ok and client.read_commit(pair.v2) == pair.repo.read_commit(pair.v2)
