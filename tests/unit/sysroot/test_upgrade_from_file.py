"""``upgrade --from-file``: a machine updated from an offline update file, with no network.

The publisher has v1 and v2; the machine runs v1 and never talks to it. A signed
self-contained file v1→v2 deploys v2 and moves the origin ref; a file signed by another key,
or made for a version the machine does not run, is refused and nothing changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sampleos import make_tree  # type: ignore[import-not-found]

from bootree.delta import DeltaOptions, generate_delta
from bootree.errors import DeltaError, SignatureError
from bootree.format.checksum import Checksum
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType
from bootree.pull import pull_local
from bootree.repo import Repo, RepoMode
from bootree.sign import SecretKey, Verifier
from bootree.sign.delta import sign_superblock, verify_superblock
from bootree.sysroot import DeployOptions, Origin, deploy
from bootree.sysroot.offline import upgrade_from_file

KEY = SecretKey.from_seed(bytes(range(32)))
OTHER = SecretKey.from_seed(bytes(range(1, 33)))


def commit_tree(repo: Repo, tree: Path, version: int, branch: str) -> Checksum:
    """As the sysroot fixtures commit (owner 0, fixed timestamps; no conftest import, whose
    module name other test directories' conftests shadow)."""
    from bootree.repo import CommitOptions

    return repo.commit([tree], branch=branch, subject=f"v{version}", timestamp=1700000000 + version * 100,
                       metadata=[("version", Variant("s", str(version)))],
                       options=CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True))


def _publisher(tmp_path: Path) -> tuple[Repo, list[Checksum]]:
    repo = Repo.init(tmp_path / "publisher", mode=RepoMode.ARCHIVE)
    commits = []
    for version in (0, 1, 2):
        tree = tmp_path / f"pub-tree-{version}"
        make_tree(tree, version, kernel="5.10.0", with_shell=False)
        commits.append(commit_tree(repo, tree, version, branch="sampleos/stable"))
    return repo, commits


def _update_file(tmp_path: Path, repo: Repo, frm: Checksum, to: Checksum, key: SecretKey) -> Path:
    path = tmp_path / "usb" / f"{frm[:8]}-{to[:8]}-{key.public.base64[:4]}.delta"
    path.parent.mkdir(exist_ok=True)
    generate_delta(repo, to, from_commit=frm, options=DeltaOptions(min_fallback_size=0, inline=True), filename=path,
                   sign=lambda data: sign_superblock(data, ed25519_keys=[key]))
    return path


def _check(data: bytes) -> None:
    verify_superblock("offline update file", data, verifier=Verifier(ed25519=(KEY.public,)))


def test_update_from_a_signed_file_deploys_and_moves_the_ref(env: Any, tmp_path: Path) -> None:
    pub, (v0, v1, v2) = _publisher(tmp_path)
    s = env.sysroot
    pull_local(s.repo, pub.path, [v1])
    s.repo.set_ref("sampleos/stable", v1)
    with s.lock():
        deploy(s, v1, stateroot="sampleos", origin=Origin.for_refspec("sampleos/stable"), opts=DeployOptions())
    s = env.reopen()
    before = [d.name for d in s.deployments]

    bad_key = _update_file(tmp_path, pub, v1, v2, OTHER)
    with s.lock(), pytest.raises(SignatureError):
        upgrade_from_file(s, bad_key, check_signature=_check)
    other_base = _update_file(tmp_path, pub, v0, v2, KEY)
    with s.lock(), pytest.raises(DeltaError, match="does not have"):
        upgrade_from_file(s, other_base, check_signature=_check)
    s = env.reopen()
    assert [d.name for d in s.deployments] == before and not s.repo.has_object(ObjectType.COMMIT, v2)
    assert s.repo.resolve_rev("sampleos/stable") == v1

    good = _update_file(tmp_path, pub, v1, v2, KEY)
    with s.lock():
        result = upgrade_from_file(s, good, check_signature=_check)
    assert result.deployed is not None
    s = env.reopen()
    assert s.deployments[0].csum == v2 and s.repo.resolve_rev("sampleos/stable") == v2
    assert s.repo.fsck().ok
    with s.lock():  # the same file again: nothing new
        assert upgrade_from_file(s, good, check_signature=_check).up_to_date
