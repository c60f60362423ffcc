"""Deploy writes .ostree.cfs when prepare-root.conf enables composefs, and checks the commit digest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sysrootenv import SysrootEnv

from bootree.cli import main
from bootree.composefs import (
    COMPOSEFS_NAME,
    ComposefsDigestMismatch,
    build_image,
    commit_digest,
    digest_metadata,
    tree_image,
)
from bootree.errors import SysrootError
from bootree.format.checksum import Checksum
from bootree.format.fsverity import fsverity_digest
from bootree.format.gvariant import Variant
from bootree.format.objects import ObjectType
from bootree.repo import CommitOptions
from bootree.sysroot.composefs import ComposefsMode, load_root_config
from bootree.sysroot.deploy import DeployOptions, deploy
from bootree.sysroot.deployment import Deployment, Origin

ORIGIN = Origin.for_refspec("sampleos/stable")


def _conf(enabled: str) -> object:
    def edit(tree: Path) -> None:
        p = tree / "usr/lib/ostree/prepare-root.conf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"[composefs]\nenabled = {enabled}\n")
        (tree / "usr/share/big.bin").write_bytes(bytes(i % 249 for i in range(50000)))

    return edit


def _commit(env: SysrootEnv, version: int, enabled: str | None, *, digest: bool = True) -> Checksum:
    from sampleos import make_tree  # type: ignore[import-not-found]

    tree = env.base / f"tree-{version}-{os.urandom(3).hex()}"
    make_tree(tree, version, with_shell=False)
    if enabled is not None:
        _conf(enabled)(tree)  # type: ignore[operator]
    repo = env.sysroot.repo

    def meta(t: Checksum, m: Checksum) -> list[tuple[str, Variant]]:
        return [digest_metadata(tree_image(repo, t, m).digest)] if digest else []

    return repo.commit(
        [tree], branch=f"sampleos/v{version}", subject=f"v{version}", timestamp=1700000000 + version,
        metadata=[("version", Variant("s", str(version)))], options=CommitOptions(owner_uid=0, owner_gid=0, no_xattrs=True),
        tree_metadata=meta,
    )


def _deploy(env: SysrootEnv, csum: Checksum) -> Deployment:
    s = env.sysroot
    with s.lock():
        return deploy(s, csum, stateroot="sampleos", origin=ORIGIN, opts=DeployOptions()).deployment


def test_no_config_no_image(env: SysrootEnv) -> None:
    d = _deploy(env, _commit(env, 1, None))
    assert not (env.sysroot.deployment_dir(d) / COMPOSEFS_NAME).exists()


@pytest.mark.parametrize("enabled", ["yes", "verity", "signed", "maybe", "true"])
def test_deploy_writes_the_commit_image(env: SysrootEnv, enabled: str, capsys: pytest.CaptureFixture[str]) -> None:
    csum = _commit(env, 1, enabled)
    d = _deploy(env, csum)
    image = env.sysroot.deployment_dir(d) / COMPOSEFS_NAME
    data = image.read_bytes()
    expected = commit_digest(env.sysroot.repo.read_commit(csum))
    assert expected is not None and fsverity_digest(data) == expected
    assert data == build_image(env.sysroot.repo, csum).data
    assert image.stat().st_mode & 0o777 == 0o644
    capsys.readouterr()
    assert main(["admin", "status", f"--sysroot={env.path}", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["deployments"][0]["composefs"]["digest"] == expected.hex()
    assert main(["admin", "status", f"--sysroot={env.path}"]) == 0
    assert f"composefs: {expected.hex()}" in capsys.readouterr().out


def test_verity_without_commit_digest_computes_object_digests(env: SysrootEnv) -> None:
    from bootree.format.composefs_dump import iter_nodes
    from bootree.format.erofs_read import read_image

    d = _deploy(env, _commit(env, 1, "verity", digest=False))
    root = read_image((env.sysroot.deployment_dir(d) / COMPOSEFS_NAME).read_bytes()).root
    big = dict(iter_nodes(root))[b"/usr/share/big.bin"]
    assert big.digest == fsverity_digest(bytes(i % 249 for i in range(50000)))


def test_replaced_object_refuses_the_deploy(env: SysrootEnv) -> None:
    csum = _commit(env, 1, "yes")
    repo = env.sysroot.repo
    obj = next(c for p, k, c, _ in repo.walk_tree(csum) if p == "/usr/share/big.bin")
    path = repo.object_path(ObjectType.FILE, obj)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(bytes(data))
    before = sorted(os.listdir(env.path / "ostree/deploy/sampleos/deploy"))
    with pytest.raises(ComposefsDigestMismatch) as exc:
        _deploy(env, csum)
    assert exc.value.commit == csum
    assert sorted(os.listdir(env.path / "ostree/deploy/sampleos/deploy")) == before  # nothing left behind
    assert main(["admin", "deploy", f"--sysroot={env.path}", "--os=sampleos", csum]) == 1


def test_root_config_lookup(tmp_path: Path) -> None:
    assert load_root_config(tmp_path) is ComposefsMode.NO
    (tmp_path / "usr/lib/ostree").mkdir(parents=True)
    (tmp_path / "usr/lib/ostree/prepare-root.conf").write_text("[composefs]\nenabled=signed\n")
    assert load_root_config(tmp_path) is ComposefsMode.SIGNED
    (tmp_path / "etc/ostree").mkdir(parents=True)
    (tmp_path / "etc/ostree/prepare-root.conf").write_text("[root]\ntransient=true\n")
    assert load_root_config(tmp_path) is ComposefsMode.NO  # the /etc file replaces the whole config
    (tmp_path / "etc/ostree/prepare-root.conf").write_text("[composefs]\nenabled = 0\n")
    assert load_root_config(tmp_path) is ComposefsMode.NO
    (tmp_path / "etc/ostree/prepare-root.conf").write_text("[composefs]\nenabled = perhaps\n")
    with pytest.raises(SysrootError):
        load_root_config(tmp_path)
    assert ComposefsMode.parse("verity").require_verity and not ComposefsMode.parse("yes").require_verity


def _host_has_verity(path: Path) -> bool:
    from bootree import _fs

    probe = path / ".verity-probe"
    probe.write_bytes(b"x")
    fd = os.open(probe, os.O_RDONLY)
    try:
        return _fs.fsverity_enable(fd)
    finally:
        os.close(fd)
        probe.unlink()


@pytest.mark.parametrize("config", [("ex-fsverity", "required", "true"), ("ex-fsverity", "opportunistic", "true")])
def test_repo_fsverity_policy_at_deploy(env: SysrootEnv, config: tuple[str, str, str]) -> None:
    """``[ex-fsverity] required=true``: the deploy turns fs-verity on for the image's objects or fails
    (``VerityUnsupported``: the boot's ``verity=require`` would refuse them); ``opportunistic``: best
    effort. The committed objects predate the config (as after an install)."""
    from bootree.errors import VerityUnsupported

    if _host_has_verity(env.path):
        pytest.skip("this file system has fs-verity: the VM test covers that side")
    csum = _commit(env, 1, "signed")
    repo = env.sysroot.repo
    repo.config.set(*config)
    repo.save_config()
    if config[1] == "required":
        with pytest.raises(VerityUnsupported, match="fs-verity is required"):
            _deploy(env, csum)
    else:
        d = _deploy(env, csum)
        data = (env.sysroot.deployment_dir(d) / COMPOSEFS_NAME).read_bytes()
        assert fsverity_digest(data) == commit_digest(repo.read_commit(csum))  # digests computed in software


def test_post_copy_policy(env: SysrootEnv, capsys: pytest.CaptureFixture[str]) -> None:
    """``admin post-copy``: nothing without ``[ex-fsverity]``; ``opportunistic`` stops quietly where
    the file system has no fs-verity, ``required`` fails (the success side runs in the VM test)."""
    if _host_has_verity(env.path):
        pytest.skip("this file system has fs-verity: the VM test covers that side")
    _deploy(env, _commit(env, 1, "yes"))
    repo = env.sysroot.repo
    assert main(["admin", "post-copy", f"--sysroot={env.path}"]) == 0
    assert "fs-verity enabled on 0 files" in capsys.readouterr().out
    repo.config.set("ex-fsverity", "opportunistic", "true")
    repo.save_config()
    assert main(["admin", "post-copy", f"--sysroot={env.path}"]) == 0
    assert "not supported" in capsys.readouterr().out
    repo.config.set("ex-fsverity", "required", "true")
    repo.save_config()
    assert main(["admin", "post-copy", f"--sysroot={env.path}"]) == 1
    assert "error: " in capsys.readouterr().err
