"""A static delta is no way around signature checks: its commit is verified before any part is used.

The server keeps v2's objects only inside the delta (the loose ones are deleted), so a pull of
v2 can only succeed through the delta: with the publisher's key trusted it does, with another
key it fails with one error line and the client's repository is exactly as before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bootree.cli import main
from bootree.delta import DeltaOptions, generate_delta
from bootree.format.objects import ObjectType
from bootree.pull import add_remote, get_remote, pull
from bootree.pull.plan import object_path
from bootree.pull.publish import sign_commit, sign_summary, update_summary
from bootree.repo import Repo, RepoMode
from bootree.sign import SecretKey
from bootree.transport.server import StaticServer

pytestmark = pytest.mark.integration

KEY = SecretKey.from_seed(bytes(range(32)))
OTHER = SecretKey.from_seed(bytes(range(1, 33)))


def _tree(root: Path, version: int) -> Path:
    d = root / f"tree{version}"
    (d / "usr" / "bin").mkdir(parents=True)
    for i in range(8):
        (d / "usr" / "bin" / f"tool{i}").write_bytes(f"tool {i} v{version if i < 4 else 1}\n".encode() * 300)
    return d


def _state(repo: Path) -> dict[str, str]:
    return {
        str(f.relative_to(repo)): hashlib.sha256(f.read_bytes()).hexdigest()
        for top in ("objects", "refs", "state")
        for f in sorted((repo / top).rglob("*"))
        if f.is_file()
    }


def _client(tmp_path: Path, name: str, url: str, key: SecretKey) -> Repo:
    repo = Repo.init(tmp_path / name, mode=RepoMode.BARE_USER)
    opts = {"gpg-verify": "false", "sign-verify": "true", "sign-verify-summary": "true",
            "verification-ed25519-key": key.public.base64}
    add_remote(repo.config, "origin", url, options=list(opts.items()))
    repo.save_config()
    return repo


def test_delta_commit_is_verified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = Repo.init(tmp_path / "pub", mode=RepoMode.ARCHIVE)
    v1 = src.commit([_tree(tmp_path, 1)], branch="os", subject="v1", timestamp=1700000000, bindings=False)
    v2 = src.commit([_tree(tmp_path, 2)], branch="os", subject="v2", timestamp=1700000100, bindings=False)
    for c in (v1, v2):
        sign_commit(src, c, ed25519_keys=[KEY])
    delta = generate_delta(src, v2, from_commit=v1, options=DeltaOptions(min_fallback_size=0))
    assert delta.superblock.commitmeta is not None  # the signatures travel in the superblock
    only_v2 = src.reachable_objects([v2]) - src.reachable_objects([v1])
    for otype, csum in only_v2:
        if otype in (ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.DIR_META):
            (src.path / object_path(otype, csum)).unlink()
    update_summary(src)
    sign_summary(src, ed25519_keys=[KEY])
    with StaticServer(src.path) as server:
        good = _client(tmp_path, "good", server.url, KEY)
        pull(good, get_remote(good.config, "origin"), [f"os@{v1}"])
        pull(good, get_remote(good.config, "origin"), ["os"])
        assert good.refs.get("origin:os") == v2 and good.fsck().ok

        bad = _client(tmp_path, "bad", server.url, OTHER)
        bad.config.set("remote \"origin\"", "sign-verify-summary", "false")
        bad.save_config()
        # v1 comes in unverified (its key is not trusted either): copy it from the good client
        with bad.transaction() as txn:
            for otype, csum in good.reachable_objects([v1]):
                if otype is ObjectType.FILE:
                    header, data = good.load_file(csum)
                    txn.write_file(header, data, csum)
                elif otype is not ObjectType.COMMIT_META:
                    from bootree.format.verified import VerifiedMetadata

                    txn.write_metadata(VerifiedMetadata.parse(otype, good.load_metadata(otype, csum), csum))
        before = _state(bad.path)
        rc = main([f"--repo={bad.path}", "pull", "origin", "os"])
        err = capsys.readouterr().err
        assert rc == 1 and err.startswith("error: ") and "signature" in err, err
        assert v2[:12] in err or "ed25519" in err, err
        assert _state(bad.path) == before


def test_signed_superblock_is_checked_by_a_verifying_pull(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The superblock itself signed (``generate --sign``): a trusted key's signature passes, a
    superblock re-signed by another key fails the pull with one line, and nothing is written."""
    from bootree.format.delta import SignedSuperblock
    from bootree.sign.delta import sign_superblock

    src = Repo.init(tmp_path / "pub", mode=RepoMode.ARCHIVE)
    v1 = src.commit([_tree(tmp_path, 1)], branch="os", subject="v1", timestamp=1700000000, bindings=False)
    v2 = src.commit([_tree(tmp_path, 2)], branch="os", subject="v2", timestamp=1700000100, bindings=False)
    for c in (v1, v2):
        sign_commit(src, c, ed25519_keys=[KEY])
    delta = generate_delta(src, v2, from_commit=v1, options=DeltaOptions(min_fallback_size=0),
                           sign=lambda data: sign_superblock(data, ed25519_keys=[KEY]))
    for otype, csum in src.reachable_objects([v2]) - src.reachable_objects([v1]):
        if otype in (ObjectType.FILE, ObjectType.DIR_TREE, ObjectType.DIR_META):
            (src.path / object_path(otype, csum)).unlink()  # only the delta can bring v2 in
    update_summary(src)
    sign_summary(src, ed25519_keys=[KEY])
    with StaticServer(src.path) as server:
        good = _client(tmp_path, "good", server.url, KEY)
        pull(good, get_remote(good.config, "origin"), [f"os@{v1}"])
        pull(good, get_remote(good.config, "origin"), ["os"])
        assert good.refs.get("origin:os") == v2 and good.fsck().ok

        # Re-signed by another key; the commit inside is still validly signed by KEY.
        sb_path = delta.path / "superblock"
        signed = SignedSuperblock.from_bytes(sb_path.read_bytes())
        assert signed is not None
        sb_path.write_bytes(sign_superblock(signed.superblock, ed25519_keys=[OTHER]))
        update_summary(src)
        sign_summary(src, ed25519_keys=[KEY])
        other = _client(tmp_path, "other", server.url, KEY)
        pull(other, get_remote(other.config, "origin"), [f"os@{v1}"])
        before = _state(other.path)
        rc = main([f"--repo={other.path}", "pull", "origin", "os"])
        err = capsys.readouterr().err
        assert rc == 1 and err.startswith("error: static delta") and "ed25519" in err, err
        assert _state(other.path) == before
