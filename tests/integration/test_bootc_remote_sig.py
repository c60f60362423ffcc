"""``ostree-remote-image:REMOTE:IMAGE`` against a real docker-registry: the encapsulated commit is
checked with the named ostree remote's keys (ed25519 ``verification-ed25519-key`` from ``remote add
--sign-verify``, GPG keyrings from ``remote gpg-import``) before anything is written or staged.

Images are encapsulated and pushed by bootree; signatures are real (bootree's ed25519 signer, gpg).
Each refusal ends with one ``error:`` line and leaves deployments and refs as they were.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from registrykit import Registry, bootree, insecure_registry, new_sysroot
from tests.conftest import GpgKey
from tests.integration.test_bootc_registry import _one_error_nothing_staged

from bootree.format.checksum import Checksum, ObjectType
from bootree.pull.publish import sign_commit
from bootree.repo import Repo, RepoMode
from bootree.sign import SecretKey
from bootree.sysroot import Sysroot

pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("docker-registry", "skopeo")),
                       reason="needs docker-registry and skopeo"),
    pytest.mark.slow,
]
KVER = "6.1.0-sig"


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with insecure_registry(tmp_path_factory.mktemp("sig-registry")) as r:
        yield r


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("OSTREE_GPG_HOME", str(tmp_path / "no-global-gpg"))  # no system keyring counts


def _commit(tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str) -> tuple[Repo, Checksum]:
    """A bootable commit on branch ``os`` of a fresh archive repository."""
    tree = tmp_path / f"tree-{version}"
    for d in ("usr/bin", f"usr/lib/modules/{KVER}", "usr/etc"):
        (tree / d).mkdir(parents=True)
    (tree / "usr/bin/hello").write_text(f"#!/bin/sh\necho {version}\n")
    (tree / f"usr/lib/modules/{KVER}/vmlinuz").write_bytes(b"kernel " + version.encode())
    (tree / "usr/etc/os-release").write_text(f"VERSION={version}\n")
    path = tmp_path / f"repo-{version}"
    repo = Repo.init(path, mode=RepoMode.ARCHIVE)
    rc, out, err = bootree(capsys, "commit", f"--repo={path}", "-b", "os", "-s", f"v{version}",
                           f"--add-metadata-string=version={version}", "--timestamp=@1700000000", str(tree))
    assert rc == 0, err
    return repo, Checksum(out.strip())


def _push(capsys: pytest.CaptureFixture[str], repo: Repo, dest: str) -> str:
    rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo.path}", "os", dest)
    assert rc == 0, err
    return out.strip().removeprefix("Pushed digest: ")


def _client(tmp_path: Path, capsys: pytest.CaptureFixture[str], *remote_args: str) -> Path:
    sysroot = new_sysroot(tmp_path)
    rc, _, err = bootree(capsys, "remote", "add", f"--sysroot={sysroot}", *remote_args)
    assert rc == 0, err
    return sysroot


def _origin(sysroot: Path) -> str:
    s = Sysroot.open(sysroot)
    d = s.staged or s.deployments[0]
    assert d.origin is not None
    return str(d.origin.container_image_reference)


def test_ed25519_signed_image_deploys_unsigned_and_forged_are_refused(
        reg: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trusted, other = SecretKey.generate(), SecretKey.generate()
    signed, c1 = _commit(tmp_path, capsys, "1")
    sign_commit(signed, c1, ed25519_keys=[trusted])
    _push(capsys, signed, f"docker://{reg.host}/sig/os:signed")
    unsigned, _ = _commit(tmp_path, capsys, "2")
    _push(capsys, unsigned, f"docker://{reg.host}/sig/os:unsigned")
    mallory, c3 = _commit(tmp_path, capsys, "3")
    sign_commit(mallory, c3, ed25519_keys=[other])
    _push(capsys, mallory, f"docker://{reg.host}/sig/os:other-key")
    # Tampered: the trusted key's signature of commit 1 attached to commit 4 (a valid signature
    # by a trusted key, of other bytes).
    forged, c4 = _commit(tmp_path, capsys, "4")
    sign_commit(forged, c4, ed25519_keys=[other])
    (forged.path / "objects" / c4[:2] / f"{c4[2:]}.commitmeta").write_bytes(
        (signed.path / "objects" / c1[:2] / f"{c1[2:]}.commitmeta").read_bytes())
    _push(capsys, forged, f"docker://{reg.host}/sig/os:tampered")

    sysroot = _client(tmp_path, capsys, "--no-gpg-verify", f"--sign-verify=ed25519=inline:{trusted.public.base64}",
                      "fleet", "https://unused.invalid/repo")
    target = f"ostree-remote-image:fleet:docker://{reg.host}/sig/os:signed"
    rc, out, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", target)
    assert rc == 0, err
    assert "Queued for next boot" in out
    assert _origin(sysroot) == target  # the string bootc writes
    s = Sysroot.open(sysroot)
    assert s.repo.read_commit(s.deployments[0].csum).parent == c1
    rc, out, _ = bootree(capsys, "status", f"--sysroot={sysroot}", "--json")
    deployed = json.loads(out)["status"]["otherDeployments"][0]["image"]["image"]
    assert rc == 0 and deployed["signature"] == {"ostreeRemote": "fleet"}, deployed

    for tag, match in (("unsigned", r"Can't verify commit without detached metadata"),
                       ("other-key", r"ed25519 signature: untrusted"),
                       ("tampered", r"ed25519 signature")):
        _one_error_nothing_staged(capsys, sysroot, ["switch", f"--sysroot={sysroot}",
                                                    f"ostree-remote-image:fleet:docker://{reg.host}/sig/os:{tag}"],
                                  match)
    # Refused before any of its objects was written: the refused commits are nowhere.
    for c in (c3, c4):
        assert not Sysroot.open(sysroot).repo.has_object(ObjectType.COMMIT, c)
    # An unknown remote fails before any network access.
    _one_error_nothing_staged(capsys, sysroot, ["switch", f"--sysroot={sysroot}",
                                                f"ostree-remote-image:nosuch:docker://{reg.host}/sig/os:signed"],
                              r"nosuch")


def test_cached_unverified_image_is_checked_again(reg: Registry, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An image pulled unverified earlier is not trusted later because its layers are stored."""
    key = SecretKey.generate()
    unsigned, _ = _commit(tmp_path, capsys, "1")
    _push(capsys, unsigned, f"docker://{reg.host}/cache/os:v1")
    sysroot = _client(tmp_path, capsys, "--no-gpg-verify", f"--sign-verify=ed25519=inline:{key.public.base64}",
                      "fleet", "https://unused.invalid/repo")
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", f"{reg.host}/cache/os:v1")
    assert rc == 0, err
    _one_error_nothing_staged(capsys, sysroot, ["switch", f"--sysroot={sysroot}",
                                                f"ostree-remote-image:fleet:docker://{reg.host}/cache/os:v1"],
                              r"Can't verify commit without detached metadata")
    # Now signed: the same tree re-published under a signed commit verifies and deploys.
    key_repo, c2 = _commit(tmp_path, capsys, "2")
    sign_commit(key_repo, c2, ed25519_keys=[key])
    _push(capsys, key_repo, f"docker://{reg.host}/cache/os:v1")
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}",
                         f"ostree-remote-image:fleet:docker://{reg.host}/cache/os:v1")
    assert rc == 0, err


def test_plain_image_is_refused(reg: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.oci.ocigen import KERNEL, Entry, write_layout

    lay = tmp_path / "plain"
    write_layout(lay, [[Entry("usr/lib/modules/6.1.0-test", "d", mode=0o755), Entry(KERNEL, data=b"k")]],
                 labels={"containers.bootc": "1"})
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{lay}:latest",
                    f"docker://{reg.host}/plain/os:v1"], check=True, capture_output=True)
    key = SecretKey.generate()
    sysroot = _client(tmp_path, capsys, "--no-gpg-verify", f"--sign-verify=ed25519=inline:{key.public.base64}",
                      "fleet", "https://unused.invalid/repo")
    mark = reg.mark()
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo",
                         f"ostree-remote-image:fleet:docker://{reg.host}/plain/os:v1")
    assert rc == 1 and err.startswith("error: ") and "not an encapsulated ostree image" in err, err
    index = json.loads((lay / "index.json").read_text())
    manifest = json.loads((lay / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    assert manifest["layers"][0]["digest"] not in reg.blob_bytes(since=mark), "no layer is fetched"
    assert not Sysroot.open(sysroot).deployments


def test_gpg_signed_image(reg: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], gpg_key: GpgKey,
                          other_gpg_key: GpgKey) -> None:
    good, c1 = _commit(tmp_path, capsys, "1")
    sign_commit(good, c1, gpg_key_ids=[gpg_key.fingerprint], gpg_homedir=gpg_key.home)
    _push(capsys, good, f"docker://{reg.host}/gpg/os:good")
    bad, c2 = _commit(tmp_path, capsys, "2")
    sign_commit(bad, c2, gpg_key_ids=[other_gpg_key.fingerprint], gpg_homedir=other_gpg_key.home)
    _push(capsys, bad, f"docker://{reg.host}/gpg/os:bad")

    sysroot = _client(tmp_path, capsys, "fleet", "https://unused.invalid/repo")  # gpg-verify: ostree's default
    # No key imported yet: refused before any network access.
    _one_error_nothing_staged(capsys, sysroot, ["switch", f"--sysroot={sysroot}", "--stateroot=demo",
                                                f"ostree-remote-image:fleet:docker://{reg.host}/gpg/os:good"],
                              r"no trusted GPG key")
    rc, _, err = bootree(capsys, "remote", "gpg-import", f"--repo={sysroot}/ostree/repo", "fleet", "-k",
                         str(gpg_key.public_keyring))
    assert rc == 0, err
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo",
                           f"ostree-remote-image:fleet:docker://{reg.host}/gpg/os:good")
    assert rc == 0, err
    _one_error_nothing_staged(capsys, sysroot, ["switch", f"--sysroot={sysroot}",
                                                f"ostree-remote-image:fleet:docker://{reg.host}/gpg/os:bad"],
                              r"GPG")


def test_signed_image_upgrades_through_a_delta_and_a_forged_delta_target_is_refused(
        reg: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The delta path checks the commit it leads to with the remote's keys, as the layer path does.

    v2 is published with a delta from v1 and signed by the trusted key: the device upgrades
    through the delta (no layer moves). v3 is signed by another key and also published with a
    delta: the delta is refused by the same check, the layers too, nothing is staged.
    """
    trusted, other = SecretKey.generate(), SecretKey.generate()
    repo = Repo.init(tmp_path / "publisher", mode=RepoMode.ARCHIVE)
    noise = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(8192))  # 256 KiB: a delta wins
    commits: dict[str, Checksum] = {}
    for version in ("1", "2", "3"):
        tree = tmp_path / f"tree-{version}"
        for d in ("usr/bin", f"usr/lib/modules/{KVER}", "usr/etc"):
            (tree / d).mkdir(parents=True)
        (tree / "usr/bin/data").write_bytes(noise[:1000] + version.encode() + noise[1000:])
        (tree / f"usr/lib/modules/{KVER}/vmlinuz").write_bytes(b"kernel")
        (tree / "usr/etc/os-release").write_text(f"VERSION={version}\n")
        rc, out, err = bootree(capsys, "commit", f"--repo={repo.path}", "-b", f"v{version}",
                               f"--add-metadata-string=version={version}", "--timestamp=@1700000000", str(tree))
        assert rc == 0, err
        commits[version] = Checksum(out.strip())
        sign_commit(repo, commits[version], ed25519_keys=[other if version == "3" else trusted])
    image = f"{reg.host}/sigdelta/os:latest"

    def publish(rev: str, *extra: str) -> None:
        rc, _, err = bootree(capsys, "container", "encapsulate", f"--repo={repo.path}", *extra, rev,
                             f"docker://{image}")
        assert rc == 0, err

    publish("v1")
    sysroot = _client(tmp_path, capsys, "--no-gpg-verify", f"--sign-verify=ed25519=inline:{trusted.public.base64}",
                      "fleet", "https://unused.invalid/repo")
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo",
                         f"ostree-remote-image:fleet:docker://{image}")
    assert rc == 0, err
    assert bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")[0] == 0

    publish("v2", f"--delta-from=docker://{image}")
    mark = reg.mark()
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={sysroot}")
    assert rc == 0 and "Queued for next boot" in out, err
    assert "Fetched delta" in out and "warning" not in out + err, out + err
    s = Sysroot.open(sysroot)
    assert s.staged is not None and s.repo.read_commit(s.staged.csum).parent == commits["2"]
    assert s.repo.read_commitmeta(commits["2"]) is not None, "the signature is kept with the commit"
    layers = {d for d, _ in reg.blob_bytes(since=mark).items()}
    assert len(layers) == 3, f"the config, the delta and its layer map, no layer: {layers}"

    rc, _, err = bootree(capsys, "admin", "finalize-staged", f"--sysroot={sysroot}")
    assert rc == 0, err
    assert bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")[0] == 0
    publish("v3", f"--delta-from=docker://{image}")
    _one_error_nothing_staged(capsys, sysroot, ["upgrade", f"--sysroot={sysroot}"], r"ed25519 signature: untrusted")
    assert not Sysroot.open(sysroot).repo.has_object(ObjectType.COMMIT, commits["3"])
