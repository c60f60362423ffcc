"""The commit check of an encapsulated import (what ``ostree-remote-image:`` runs): it sees the
commit's bytes and signatures before the commit is written, refuses plain images before any layer
is read, and checks a stored commit again when the image or its commit layer is already present."""

from __future__ import annotations

from pathlib import Path

import ostreegen
import pytest
from ocigen import KERNEL, Entry, write_layout
from ostreegen import write_encapsulated
from test_encapsulated import _commit, repo, src

from bootree.errors import SignatureError
from bootree.format.checksum import Checksum, ObjectType
from bootree.oci.importer import pull_image
from bootree.oci.reference import ImageReference, image_ref
from bootree.repo import Repo
from bootree.sign import SecretKey, Verifier
from bootree.sign.verifier import add_ed25519

__all__ = ["repo", "src"]  # the fixtures of test_encapsulated


class Check:
    """An ed25519 commit check that records what it was shown."""

    def __init__(self, key: SecretKey) -> None:
        self.verifier = Verifier(ed25519=(key.public,))
        self.seen: list[tuple[Checksum, bytes, bytes | None]] = []

    def __call__(self, csum: Checksum, commit: bytes, detached: bytes | None) -> None:
        self.seen.append((csum, commit, detached))
        if detached is None:
            raise SignatureError(f"commit {csum}", "unsigned", "no detached metadata")
        self.verifier.check(f"commit {csum}", commit, detached, require_sign=True)


def _sign(src: Repo, commit: Checksum, key: SecretKey) -> bytes:
    meta = add_ed25519(src.load_metadata(ObjectType.COMMIT, commit), src.read_commitmeta(commit), [key])
    with src.transaction() as txn:
        txn.write_commitmeta(commit, meta)
    return meta


def _nothing(repo: Repo) -> None:
    assert repo.refs.list() == {}
    assert not [p for p in (repo.path / "objects").rglob("*") if p.is_file()]


@pytest.mark.parametrize("chunks", [0, 2])
def test_signed_commit_passes_and_the_check_sees_its_signatures(src: Repo, repo: Repo, tmp_path: Path,
                                                                 chunks: int) -> None:
    key = SecretKey.generate()
    commit = _commit(src, tmp_path)
    meta = _sign(src, commit, key)
    lay = tmp_path / "oci"
    write_encapsulated(lay, src, commit, chunks=chunks)
    check = Check(key)
    res = pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64", commit_check=check)
    assert res.ostree_commit == commit
    assert check.seen == [(commit, src.load_metadata(ObjectType.COMMIT, commit), meta)]
    assert repo.read_commitmeta(commit) == meta and repo.fsck().ok


@pytest.mark.parametrize(("case", "reason"), [("unsigned", "unsigned"), ("other-key", "untrusted"),
                                              ("tampered", None)])
def test_refused_commit_publishes_nothing(src: Repo, repo: Repo, tmp_path: Path, case: str,
                                          reason: str | None) -> None:
    key, other = SecretKey.generate(), SecretKey.generate()
    commit = _commit(src, tmp_path)
    if case == "other-key":
        _sign(src, commit, other)
    elif case == "tampered":  # the trusted key's signature of another commit
        meta = _sign(src, _commit(src, tmp_path, "2"), key)
        with src.transaction() as txn:
            txn.write_commitmeta(commit, meta)
    lay = tmp_path / "oci"
    write_encapsulated(lay, src, commit, chunks=1)
    check = Check(key)
    with pytest.raises(SignatureError) as exc:
        pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64", commit_check=check)
    if reason is not None:
        assert exc.value.reason == reason
    assert len(check.seen) == 1 and (check.seen[0][2] is None) == (case == "unsigned")
    _nothing(repo)


def test_commitmeta_must_follow_the_commit(src: Repo, repo: Repo, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A signature that comes after other objects is not waited for (ostree-ext's rule)."""
    key = SecretKey.generate()
    commit = _commit(src, tmp_path)
    meta = _sign(src, commit, key)
    real_put = ostreegen._Writer.put
    late: list[tuple[object, str, str, bytes]] = []

    def put(self: object, t: object, ext: str, csum: str, data: bytes) -> None:
        if ext == "commitmeta":
            late.append((t, ext, csum, data))
            return
        real_put(self, t, ext, csum, data)  # type: ignore[arg-type]
        if ext in ("dirtree", "dirmeta") and late:
            real_put(self, *late.pop())  # type: ignore[arg-type]

    monkeypatch.setattr(ostreegen._Writer, "put", put)
    lay = tmp_path / "oci"
    write_encapsulated(lay, src, commit)
    monkeypatch.undo()
    check = Check(key)
    with pytest.raises(SignatureError, match="no detached metadata"):
        pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64", commit_check=check)
    _nothing(repo)
    # Without a check, the late metadata is still kept (it belongs to the commit).
    assert pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64").ostree_commit == commit
    assert repo.read_commitmeta(commit) == meta


def test_plain_image_is_refused_before_any_layer(repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "plain"
    write_layout(lay, [[Entry(KERNEL, data=b"k")]])
    check = Check(SecretKey.generate())
    with pytest.raises(SignatureError, match="not an encapsulated ostree image"):
        pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64", commit_check=check)
    assert not check.seen
    _nothing(repo)


def test_stored_image_and_stored_commit_layer_are_checked_again(src: Repo, repo: Repo, tmp_path: Path) -> None:
    key = SecretKey.generate()
    commit = _commit(src, tmp_path)
    lay = tmp_path / "oci"
    write_encapsulated(lay, src, commit)
    img = ImageReference.parse(f"oci:{lay}")
    pull_image(repo, img, architecture="amd64")  # unverified first
    check = Check(key)
    with pytest.raises(SignatureError):  # unchanged image: verified from the repository
        pull_image(repo, img, architecture="amd64", commit_check=check)
    assert check.seen == [(commit, repo.load_metadata(ObjectType.COMMIT, commit), None)]
    # The same commit layer under another image name (a new merge, the layer cached): checked too.
    other = ImageReference.parse(f"oci:{lay}:latest")
    assert image_ref(other) != image_ref(img)
    check = Check(key)
    with pytest.raises(SignatureError):
        pull_image(repo, other, architecture="amd64", commit_check=check)
    assert len(check.seen) == 1 and repo.try_resolve_rev(image_ref(other)) is None
