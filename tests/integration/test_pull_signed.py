"""Signed pulls over HTTP on 127.0.0.1, and the attacks of issue 13.

Every attack ends with a one-line ``error:`` from the CLI and the client repository exactly as
it was before (objects, refs and state compared file by file); then the honest pull still works.
ed25519 keys are used (fast, no agent); GPG is covered by tests/compat/test_sign_compat.py and
one attack below.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import GpgKey

from bootree.cli import main
from bootree.format.checksum import Checksum
from bootree.format.objects import ObjectType
from bootree.pull import add_remote, get_remote, pull
from bootree.pull.plan import object_path
from bootree.pull.publish import expiry_metadata, sign_commit, sign_summary, update_summary
from bootree.repo import Repo, RepoMode
from bootree.sign import SecretKey
from bootree.transport.server import StaticHandler, StaticServer

pytestmark = pytest.mark.integration

KEY = SecretKey.from_seed(bytes(range(32)))
OTHER = SecretKey.from_seed(bytes(range(1, 33)))


def _tree(root: Path, version: int) -> Path:
    d = root / f"tree{version}"
    (d / "usr" / "bin").mkdir(parents=True)
    for i in range(12):
        (d / "usr" / "bin" / f"tool{i}").write_bytes(f"tool {i} v{version if i < 4 else 1}\n".encode() * (i + 1))
    (d / "usr" / "lib").mkdir()
    (d / "usr" / "lib" / "os-release").write_text(f"VERSION_ID={version}\n")
    return d


@dataclass
class Pub:
    repo: Repo
    v1: Checksum
    v2: Checksum
    url: str = ""

    def meta_path(self, c: Checksum) -> Path:
        return self.repo.path / object_path(ObjectType.COMMIT_META, c)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("signed-src")
    repo = Repo.init(root / "repo", mode=RepoMode.ARCHIVE)
    v1 = repo.commit([_tree(root, 1)], branch="os/v1", subject="v1", timestamp=1700000000, bindings=False)
    v2 = repo.commit([_tree(root, 2)], branch="os/main", subject="v2", timestamp=1700000100, bindings=False)
    for c in (v1, v2):
        sign_commit(repo, c, ed25519_keys=[KEY])
    update_summary(repo)
    sign_summary(repo, ed25519_keys=[KEY])
    (root / "ids").write_text(f"{v1} {v2}")
    return root


@pytest.fixture
def pub(pristine: Path, tmp_path: Path) -> Iterator[Pub]:
    shutil.copytree(pristine / "repo", tmp_path / "pub", symlinks=True)
    v1, v2 = (Checksum(x) for x in (pristine / "ids").read_text().split())
    p = Pub(Repo.open(tmp_path / "pub"), v1, v2)
    with StaticServer(p.repo.path) as srv:
        p.url = srv.url
        yield p


def _client(tmp_path: Path, url: str, **options: str) -> Path:
    path = tmp_path / "client"
    repo = Repo.init(path, mode=RepoMode.ARCHIVE)
    opts = {"gpg-verify": "false", "sign-verify": "true", "sign-verify-summary": "true",
            "verification-ed25519-key": KEY.public.base64, **options}
    add_remote(repo.config, "origin", url, options=list(opts.items()))
    repo.save_config()
    return path


def _state(repo: Path) -> dict[str, str]:
    """Every file of objects/, refs/ and state/ with its digest: what 'unchanged' means."""
    out = {}
    for top in ("objects", "refs", "state"):
        for f in sorted((repo / top).rglob("*")):
            if f.is_file() or f.is_symlink():
                out[str(f.relative_to(repo))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(capsys: pytest.CaptureFixture[str], client: Path, *extra: str) -> str:
    """Pull os/main through the CLI; it must fail with one error line and change nothing."""
    before = _state(client)
    rc, _out, err = _cli(capsys, "pull", f"--repo={client}", "origin", "os/main", *extra)
    lines = err.strip().splitlines()
    assert rc == 1 and lines and lines[0].startswith("error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), err
    assert _state(client) == before
    return lines[0]


def test_signed_pull_works_and_rotation(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = _client(tmp_path, pub.url)
    rc, _, err = _cli(capsys, "pull", f"--repo={client}", "origin", "os/main")
    assert rc == 0, err
    assert Repo.open(client).refs.get("origin:os/main") == pub.v2
    # The detached metadata came along (a mirror of this repo can be verified again).
    assert Repo.open(client).read_commitmeta(pub.v2) == pub.meta_path(pub.v2).read_bytes()
    # Key rotation: the publisher adds a second signature; a client trusting only the new key pulls.
    sign_commit(pub.repo, pub.v1, ed25519_keys=[OTHER])
    client2 = tmp_path / "c2"
    shutil.move(client, client2)
    client = _client(tmp_path, pub.url, **{"sign-verify-summary": "false",
                                          "verification-ed25519-key": f"{KEY.public.base64};{OTHER.public.base64}"})
    rc, _, err = _cli(capsys, "pull", f"--repo={client}", "origin", "os/v1")
    assert rc == 0, err


def test_unsigned_commit(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pub.meta_path(pub.v2).unlink()
    line = _refused(capsys, _client(tmp_path, pub.url))
    assert line == f"error: commit {pub.v2}: no ed25519 signature"


def test_untrusted_key(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = _client(tmp_path, pub.url, **{"verification-ed25519-key": OTHER.public.base64, "sign-verify-summary": "false"})
    assert "ed25519 signature: untrusted" in _refused(capsys, client)


def test_revoked_key(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    revoked = tmp_path / "revoked.ed25519"
    revoked.write_text(KEY.public.base64 + "\n")
    client = _client(tmp_path, pub.url, **{"verification-ed25519-revoked-file": str(revoked), "sign-verify-summary": "false"})
    line = _refused(capsys, client)
    assert line.startswith(f"error: commit {pub.v2}: ed25519 signature: revoked") and KEY.public.base64 in line
    # The summary is refused for the same reason when it must be signed.
    client2 = _client(tmp_path / "s", pub.url, **{"verification-ed25519-revoked-file": str(revoked)})
    assert _refused(capsys, client2).startswith(f"error: summary of {pub.url}: ed25519 signature: revoked")


def test_signature_over_another_commit(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(pub.meta_path(pub.v1), pub.meta_path(pub.v2))
    assert "ed25519 signature: untrusted" in _refused(capsys, _client(tmp_path, pub.url))


def test_truncated_detached_metadata(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = pub.meta_path(pub.v2)
    p.write_bytes(p.read_bytes()[:-9])
    assert _refused(capsys, _client(tmp_path, pub.url)).startswith(f"error: corrupt commitmeta object {pub.v2}: ")


def test_summary_signature_mismatch(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sig = (pub.repo.path / "summary.sig").read_bytes()
    update_summary(pub.repo, now=1800000000)  # new bytes; the old signature put back
    (pub.repo.path / "summary.sig").write_bytes(sig)
    line = _refused(capsys, _client(tmp_path, pub.url))
    assert line.startswith(f"error: summary of {pub.url}: ed25519 signature: untrusted")
    (pub.repo.path / "summary.sig").unlink()
    assert "no summary.sig" in _refused(capsys, _client(tmp_path / "x", pub.url))


def test_expired_summary(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    update_summary(pub.repo, extra_metadata=[expiry_metadata(int(time.time()) - 60)])
    sign_summary(pub.repo, ed25519_keys=[KEY])  # validly signed, but stale
    assert "expired" in _refused(capsys, _client(tmp_path, pub.url))
    update_summary(pub.repo, extra_metadata=[expiry_metadata(int(time.time()) + 3600)])
    sign_summary(pub.repo, ed25519_keys=[KEY])
    assert _cli(capsys, "pull", f"--repo={tmp_path / 'client'}", "origin", "os/main")[0] == 0


def test_downgrade_replay(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = _client(tmp_path, pub.url)
    assert _cli(capsys, "pull", f"--repo={client}", "origin", "os/main")[0] == 0
    # The mirror replays the validly signed, older v1 as os/main.
    pub.repo.set_ref("os/main", pub.v1)
    update_summary(pub.repo)
    sign_summary(pub.repo, ed25519_keys=[KEY])
    line = _refused(capsys, client)
    assert "older than the current" in line and "refusing a downgrade" in line
    rc, _, err = _cli(capsys, "pull", f"--repo={client}", "origin", "os/main", "--allow-downgrade")
    assert rc == 0, err
    assert Repo.open(client).refs.get("origin:os/main") == pub.v1


def test_pinned_older_commit_is_an_explicit_choice(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``REF@COMMIT`` names the commit by checksum: the operator chose it, so no downgrade check
    (as ``ostree pull REMOTE REF@COMMIT`` and rpm-ostree's ``deploy COMMIT``); it is still verified."""
    client = _client(tmp_path, pub.url)
    assert _cli(capsys, "pull", f"--repo={client}", "origin", "os/main")[0] == 0
    rc, _, err = _cli(capsys, "pull", f"--repo={client}", "origin", f"os/main@{pub.v1}")
    assert rc == 0, err
    assert Repo.open(client).refs.get("origin:os/main") == pub.v1
    # The pin does not bypass the signature: v1 signed by nobody trusted is still refused.
    pub.meta_path(pub.v1).unlink()
    client2 = _client(tmp_path / "again", pub.url)
    assert _cli(capsys, "pull", f"--repo={client2}", "origin", "os/main")[0] == 0
    rc, _, err = _cli(capsys, "pull", f"--repo={client2}", "origin", f"os/main@{pub.v1}")
    assert rc == 1 and err.startswith("error: ") and Repo.open(client2).refs.get("origin:os/main") == pub.v2


class _SwapOne(StaticHandler):
    """A man in the middle: serves another object's bytes for one object path."""

    swap: tuple[str, Path] = ("", Path())

    def send_path(self, path: Path | None, *, head: bool) -> None:
        if path is not None and self.path.endswith(self.swap[0]):
            path = self.swap[1]
        super().send_path(path, head=head)


def test_mitm_swaps_one_object(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = {c for t, c in pub.repo.reachable_objects([pub.v2]) if t is ObjectType.FILE}
    old = {c for t, c in pub.repo.reachable_objects([pub.v1]) if t is ObjectType.FILE}
    victim, donor = sorted(new - old)[0], sorted(old - new)[0]
    _SwapOne.swap = (object_path(ObjectType.FILE, victim), pub.repo.path / object_path(ObjectType.FILE, donor))
    client = _client(tmp_path, pub.url)
    with StaticServer(pub.repo.path, handler=_SwapOne) as srv:
        repo = Repo.open(client)
        add_remote(repo.config, "mitm", srv.url, options=list(get_remote(repo.config, "origin").options)[1:])
        repo.save_config()
        before = _state(client)
        rc, _, err = _cli(capsys, "pull", f"--repo={client}", "mitm", "os/main")
    assert rc == 1 and err.startswith("error: ") and "checksum mismatch" in err and victim in err
    after = _state(client)
    # No ref moved and the forged object is not stored. Objects that arrived intact and were
    # verified through the signed commit's checksum chain are kept for a resumed pull.
    assert Repo.open(client).list_refs() == {} and {k for k in before if k.startswith("refs")} == {
        k for k in after if k.startswith("refs")}
    assert not Repo.open(client).has_object(ObjectType.FILE, victim)
    assert Repo.open(client).fsck().ok


def test_gpg_unsigned_commit(pub: Pub, tmp_path: Path, gpg_key: GpgKey, capsys: pytest.CaptureFixture[str]) -> None:
    client = _client(tmp_path, pub.url, **{"gpg-verify": "true", "sign-verify": "false", "sign-verify-summary": "false"})
    rc, _out, err = _cli(capsys, "remote", "gpg-import", f"--repo={client}", "origin", "-k", gpg_key.public_keyring)
    assert rc == 0, err
    assert _refused(capsys, client) == f"error: commit {pub.v2}: no GPG signature"
    sign_commit(pub.repo, pub.v2, gpg_key_ids=[gpg_key.fingerprint], gpg_homedir=gpg_key.home)
    assert _cli(capsys, "pull", f"--repo={client}", "origin", "os/main")[0] == 0


def test_library_pull_verifies_before_any_tree_object(pub: Pub, tmp_path: Path) -> None:
    """The commit gate: with a bad signature, nothing but the commit and its metadata is requested."""
    from bootree.errors import SignatureError

    pub.meta_path(pub.v2).write_bytes(pub.meta_path(pub.v1).read_bytes())
    seen: list[str] = []
    with StaticServer(pub.repo.path, request_log=lambda _s, _n, path: seen.append(path)) as srv:
        client = _client(tmp_path, srv.url)
        repo = Repo.open(client)
        with pytest.raises(SignatureError) as exc:
            pull(repo, get_remote(repo.config, "origin"), ["os/main"])
    assert exc.value.reason == "untrusted"
    paths = [p for p in seen if "/objects/" in p]
    assert sorted(p.rsplit(".", 1)[1] for p in paths) == ["commit", "commitmeta"], paths


@pytest.mark.parametrize("first", ["complete", "metadata-only"])
def test_commit_already_here_from_an_unverified_remote(
    pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str], first: str
) -> None:
    """A commit fetched earlier without verification is checked when a verified remote's ref moves to it."""
    pub.meta_path(pub.v2).unlink()  # v2 unsigned
    client = _client(tmp_path, pub.url, **{"sign-verify-summary": "false"})
    repo = Repo.open(client)
    add_remote(repo.config, "plain", pub.url, options=[("gpg-verify", "false")])
    repo.save_config()
    extra = ["--commit-metadata-only"] if first == "metadata-only" else []
    rc, _, err = _cli(capsys, "pull", f"--repo={client}", "plain", "os/main", *extra)
    assert rc == 0, err
    assert _refused(capsys, client) == f"error: commit {pub.v2}: no ed25519 signature"
    assert Repo.open(client).refs.get("origin:os/main") is None


def test_remote_add_sign_verify_option(pub: Pub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ostree's ``remote add --sign-verify=ed25519=inline:KEY`` (and ``file:PATH``) configure the same checks."""
    keyfile = tmp_path / "trusted.ed25519"
    keyfile.write_text(KEY.public.base64 + "\n")
    for n, spec in enumerate((f"ed25519=inline:{KEY.public.base64}", f"ed25519=file:{keyfile}")):
        client = tmp_path / f"c{n}"
        assert _cli(capsys, "init", f"--repo={client}", "--mode=archive")[0] == 0
        rc, _, err = _cli(capsys, "remote", "add", f"--repo={client}", "--no-gpg-verify", f"--sign-verify={spec}",
                          "origin", pub.url)
        assert rc == 0, err
        remote = get_remote(Repo.open(client).config, "origin")
        assert remote.get("sign-verify") == "ed25519"  # as ostree writes it: the engines given
        assert _cli(capsys, "pull", f"--repo={client}", "origin", "os/main")[0] == 0
    pub.meta_path(pub.v2).unlink()
    # A commit already here is checked again when its ref is pulled: its signature is gone now.
    assert _refused(capsys, tmp_path / "c0") == f"error: commit {pub.v2}: no ed25519 signature"
    rc, _, err = _cli(capsys, "remote", "add", f"--repo={tmp_path / 'c0'}", "--sign-verify=rsa=inline:x", "o2", pub.url)
    assert rc == 2 and "Requested signature type is not implemented" in err  # ostree's words
