"""The signing commands end to end: sign / --verify / --delete, commit --sign, summary --sign."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootree.cli import main
from bootree.format.summary import Summary
from bootree.pull.trust import SUMMARY_EXPIRES_KEY
from bootree.repo import Repo, RepoMode
from bootree.sign import ED25519_KEY, SecretKey, detached

pytestmark = pytest.mark.integration


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _keyfile(path: Path, key: SecretKey) -> Path:
    path.write_text(key.base64 + "\n")
    path.chmod(0o600)
    return path


def test_sign_verify_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = SecretKey.generate(), SecretKey.generate()
    ka, kb = _keyfile(tmp_path / "a.key", a), _keyfile(tmp_path / "b.key", b)
    repo = tmp_path / "repo"
    Repo.init(repo, mode=RepoMode.ARCHIVE)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x")
    rc, out, err = run(capsys, "commit", f"--repo={repo}", "-b", "main", f"--tree=dir={tree}", f"--sign={ka}",
                       "--sign-type=ed25519")
    assert rc == 0, err
    csum = out.strip()
    rc, out, _ = run(capsys, "sign", f"--repo={repo}", "--verify", "main", a.public.base64)
    assert rc == 0 and out == f"Signature verified successfully with key '{a.public.base64}'\n"
    rc, _, err = run(capsys, "sign", f"--repo={repo}", "--verify", "main", b.public.base64)
    assert rc == 1 and err.startswith(f"error: commit {csum}: ed25519 signature: untrusted")
    assert run(capsys, "sign", f"--repo={repo}", "main", f"--keys-file={kb}")[0] == 0
    assert run(capsys, "sign", f"--repo={repo}", "main", str(kb))[0] == 0  # appending again: no duplicate
    sigs = detached.signatures(detached.decode(Repo.open(repo).read_commitmeta(csum)), ED25519_KEY)
    assert len(sigs) == 2
    pubs = tmp_path / "trusted"
    pubs.write_text(f"{b.public.base64}\n")
    assert run(capsys, "sign", f"--repo={repo}", "--verify", "main", f"--keys-file={pubs}")[0] == 0
    rc, out, _ = run(capsys, "sign", f"--repo={repo}", "--delete", "main", a.public.base64)
    assert rc == 0 and out.startswith("Deleted 1 signature")
    assert run(capsys, "sign", f"--repo={repo}", "--verify", "main", a.public.base64)[0] == 1


def test_secret_key_never_on_command_line_or_in_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = SecretKey.generate()
    repo = tmp_path / "repo"
    Repo.init(repo, mode=RepoMode.ARCHIVE)
    tree = tmp_path / "tree"
    tree.mkdir()
    assert run(capsys, "commit", f"--repo={repo}", "-b", "main", f"--tree=dir={tree}")[0] == 0
    rc, out, err = run(capsys, "--debug", "sign", f"--repo={repo}", "main", key.base64)
    assert rc == 2 and "visible to every local user" in err and key.base64 not in out + err
    bad = tmp_path / "bad.key"
    bad.write_text(key.base64[:-8] + "AAAAAAA=\n")
    rc, out, err = run(capsys, "sign", f"--repo={repo}", "main", f"--keys-file={bad}")
    assert rc == 1 and "key 1" in err and key.base64[:20] not in out + err


def test_summary_sign_and_expiry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = SecretKey.generate()
    kf = _keyfile(tmp_path / "k", key)
    repo = tmp_path / "repo"
    Repo.init(repo, mode=RepoMode.ARCHIVE)
    tree = tmp_path / "tree"
    tree.mkdir()
    assert run(capsys, "commit", f"--repo={repo}", "-b", "main", f"--tree=dir={tree}")[0] == 0
    rc, _, err = run(capsys, "summary", f"--repo={repo}", "-u", f"--sign={kf}", "--expires-in=2h")
    assert rc == 0, err
    summary = Summary.from_bytes((repo / "summary").read_bytes())
    assert summary.get(SUMMARY_EXPIRES_KEY) is not None
    sig = detached.decode((repo / "summary.sig").read_bytes())
    (s,) = detached.signatures(sig, ED25519_KEY)
    assert key.public.verifies((repo / "summary").read_bytes(), s)
    assert run(capsys, "summary", f"--repo={repo}", "--expires-in=1h")[0] == 2
