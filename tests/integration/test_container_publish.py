"""``container encapsulate`` against real tools: skopeo reads what bootree writes, a real
docker-registry (distribution 2.8) on 127.0.0.1 takes bootree's pushes (monolithic, chunked,
cross-repository mounts; Basic and Bearer auth), and ``switch`` deploys the tree that was
committed, file by file, after a round trip through ``skopeo copy`` both ways.

Requests are counted in the registry's own access log, not in bootree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from registrykit import Registry, access_log, bootree, insecure_registry, new_sysroot, token_registry

from bootree.repo import Repo
from bootree.sysroot import Sysroot

pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("docker-registry", "skopeo")),
                       reason="needs docker-registry and skopeo"),
    pytest.mark.slow,
]
KVER = "6.1.0-pub"


def _listing(root: Path) -> dict[str, tuple[object, ...]]:
    """path -> (type, mode, uid, gid, content digest or link target, xattrs) under ``root``."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            xattrs = tuple(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                  for k in os.listxattr(p, follow_symlinks=False) if k.startswith("user.")))
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = ""
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                             st.st_gid, what, xattrs)
    return out


def _make_source(work: Path, capsys: pytest.CaptureFixture[str], version: str = "1.0") -> Path:
    """An archive repository with branch ``os`` (a tree with a kernel, owners, xattrs, links)."""
    tree = work / f"tree-{version}"
    for d in ("usr/bin", f"usr/lib/modules/{KVER}", "usr/etc/demo", "usr/share/doc/demo", "var/tmp", "sysroot"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    os.chmod(tree / "var/tmp", 0o1777)
    (tree / "usr/bin/hello").write_text(f"#!/bin/sh\necho {version}\n")
    os.chmod(tree / "usr/bin/hello", 0o755)
    os.link(tree / "usr/bin/hello", tree / "usr/bin/hello-hardlink")
    os.symlink("hello", tree / "usr/bin/hello-symlink")
    (tree / f"usr/lib/modules/{KVER}/vmlinuz").write_bytes(b"kernel" * 1000)
    (tree / f"usr/lib/modules/{KVER}/initramfs.img").write_bytes(b"initrd" * 1000)
    (tree / "usr/etc/demo/demo.conf").write_text("a=1\n")
    # Incompressible and deterministic: a layer larger than the chunk size of the chunked upload.
    (tree / "usr/share/doc/demo/big").write_bytes(b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest()
                                                           for i in range(3000)))
    (tree / "usr/share/doc/demo/owned").write_text("owned\n")
    os.chown(tree / "usr/share/doc/demo/owned", 1000, 1001)
    os.setxattr(tree / "usr/share/doc/demo/owned", "user.demo", b"\x00value")
    (tree / "usr/share/doc/demo/private").write_text("p\n")
    os.chmod(tree / "usr/share/doc/demo/private", 0o600)
    repo = work / "repo"
    if not repo.exists():
        assert bootree(capsys, "init", f"--repo={repo}", "--mode=archive")[0] == 0
    rc, _, err = bootree(capsys, "commit", f"--repo={repo}", "-b", "os", "-s", f"v{version}",
                         f"--add-metadata-string=version={version}", "--timestamp=@1700000000", str(tree))
    assert rc == 0, err
    return repo


def _skopeo(*argv: str) -> str:
    return subprocess.run(["skopeo", *argv], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with insecure_registry(tmp_path_factory.mktemp("publish-registry")) as r:
        yield r


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_encapsulate_to_oci_layout_skopeo_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _make_source(tmp_path, capsys)
    out = tmp_path / "oci"
    rc, stdout, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--label=org.example=yes",
                              "--max-layers=3", "os", f"oci:{out}:v1")
    assert rc == 0, err
    digest = stdout.strip().removeprefix("Exported digest: ")
    info = json.loads(_skopeo("inspect", f"oci:{out}:v1"))
    labels = info["Labels"]
    commit = (repo / "refs/heads/os").read_text().strip()
    assert labels["containers.bootc"] == "1" and labels["ostree.bootable"] == "true"
    assert labels["ostree.commit"] == commit and labels["version"] == "1.0"
    assert labels["org.example"] == "yes" and labels["ostree.final-diffid"].startswith("sha256:")
    assert info["Digest"] == digest
    raw = json.loads(_skopeo("inspect", "--raw", f"oci:{out}:v1"))
    assert 2 <= len(raw["layers"]) <= 3 and raw["layers"][1]["annotations"]["ostree.components"]
    line = _one_error(capsys, ["container", "encapsulate", f"--repo={repo}", "--label=novalue", "os",
                               f"oci:{tmp_path / 'bad'}"])
    assert "KEY=VALUE" in line
    line = _one_error(capsys, ["container", "encapsulate", f"--repo={repo}", "no-such-ref", f"oci:{tmp_path / 'bad'}"])
    assert "no-such-ref" in line
    # --compression-level (podman's option): a real zstd level change changes the layer bytes; out of range refused.
    sizes = {}
    for level in ("1", "19"):
        rc, _, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--compression=zstd",
                             f"--compression-level={level}", "os", f"oci:{tmp_path / ('lvl' + level)}")
        assert rc == 0, err
        manifest = json.loads(_skopeo("inspect", "--raw", f"oci:{tmp_path / ('lvl' + level)}"))
        sizes[level] = sum(x["size"] for x in manifest["layers"])
    assert sizes["19"] < sizes["1"], sizes
    for bad, why in (("--compression=gzip --compression-level=12", "gzip levels are 0 to 9"),
                     ("--compression=none --compression-level=3", "needs a compression"),
                     ("--compression=zstd --compression-level=0", "zstd levels are 1 to 22")):
        line = _one_error(capsys, ["container", "encapsulate", f"--repo={repo}", *bad.split(), "os",
                                   f"oci:{tmp_path / 'bad'}"])
        assert why in line, line
    # Reproducible: a second export of the same commit is byte-identical.
    rc, again, _ = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--label=org.example=yes",
                           "--max-layers=3", "os", f"oci:{tmp_path / 'oci2'}")
    assert rc == 0 and again.strip().endswith(digest)


def test_push_skopeo_roundtrip_and_switch_deploys_the_tree(reg: Registry, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    repo = _make_source(tmp_path, capsys)
    dest = f"docker://{reg.host}/pub/os:v1"
    rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--max-layers=4", "os", dest)
    assert rc == 0, err
    digest = out.strip().removeprefix("Pushed digest: ")
    info = json.loads(_skopeo("inspect", "--tls-verify=false", dest))
    assert info["Digest"] == digest and info["Labels"]["containers.bootc"] == "1"
    layout = tmp_path / "copied"
    _skopeo("copy", "--src-tls-verify=false", dest, f"oci:{layout}:v1")
    _skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{reg.host}/pub/copy:v1")

    sysroot = new_sysroot(tmp_path)
    rc, out, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", f"{reg.host}/pub/copy:v1")
    assert rc == 0, err
    assert "Queued for next boot" in out
    s = Sysroot.open(sysroot)
    deployed = s.deployment_dir(s.deployments[0])
    checkout = tmp_path / "checkout"
    assert bootree(capsys, "checkout", f"--repo={repo}", "os", str(checkout))[0] == 0
    assert _listing(deployed / "usr") == _listing(checkout / "usr")
    assert (deployed / "etc/demo/demo.conf").read_text() == "a=1\n"
    # The merged tree is the committed tree: same root dirtree checksum.
    source = Repo.open(repo)
    assert s.repo.read_commit(s.deployments[0].csum).root_tree == source.read_commit(source.resolve_rev("os")).root_tree

    # Encapsulating again is reproducible: the registry already has every blob.
    rc, out, _ = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--max-layers=4", "--json", "os",
                         f"docker://{reg.host}/pub/os:again")
    doc = json.loads(out)
    assert rc == 0 and doc["digest"] == digest
    assert doc["push"] == {"skipped": len(doc["layers"]) + 1, "mounted": 0, "uploaded": 0, "chunked": 0,
                           "bytesSent": 0}


def test_chunked_upload_and_cross_repository_mount(reg: Registry, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    repo = _make_source(tmp_path, capsys)
    mark = reg.mark()
    rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--upload-chunk-size=20000",
                           "--json", "os", f"docker://{reg.host}/chunk/a:v1")
    assert rc == 0, err
    doc = json.loads(out)
    big = [x for x in doc["layers"] if x["size"] > 20000]
    assert big and doc["push"]["chunked"] == len(big)
    log = access_log(reg, mark)
    patches = [x for x in log if x[0] == "PATCH" and x[1].startswith("/v2/chunk/a/blobs/uploads/")]
    expected = sum(-(-x["size"] // 20000) for x in big)
    assert len(patches) == expected and all(x[2] == 202 for x in patches)
    assert sum(1 for x in log if x[0] == "PUT" and "/blobs/uploads/" in x[1] and x[2] == 201) == len(doc["layers"]) + 1

    # Same blobs into another repository: mounted from chunk/a, nothing uploaded.
    mark = reg.mark()
    rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--mount-from=chunk/a", "--json",
                           "os", f"docker://{reg.host}/chunk/b:v1")
    assert rc == 0, err
    n = len(json.loads(out)["layers"]) + 1
    assert json.loads(out)["push"]["mounted"] == n
    log = access_log(reg, mark)
    mounts = [x for x in log if x[0] == "POST" and "mount=" in x[1] and "from=chunk" in x[1]]
    assert len(mounts) == n and all(x[2] == 201 for x in mounts)
    assert not [x for x in log if x[0] in ("PATCH", "PUT") and "/blobs/" in x[1]]

    # A mount from a repository without the blobs is declined (202): its session takes the upload.
    mark = reg.mark()
    rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--mount-from=nothing/here",
                           "--json", "os", f"docker://{reg.host}/chunk/d:v1")
    assert rc == 0, err
    assert json.loads(out)["push"]["uploaded"] == n
    log = access_log(reg, mark)
    assert [x[2] for x in log if x[0] == "POST" and "from=nothing" in x[1]] == [202] * n
    assert sum(1 for x in log if x[0] == "POST") == n, "the declined mount's session is used, no second POST"

    # Without --mount-from, the blob-location cache of the earlier pushes finds the source.
    rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--json", "os",
                           f"docker://{reg.host}/chunk/c:v1")
    assert rc == 0, err
    assert json.loads(out)["push"]["mounted"] == n
    assert json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{reg.host}/chunk/c:v1"))["Digest"] == \
        json.loads(out)["digest"]


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc, _, err = bootree(capsys, *argv)
    lines = [x for x in err.splitlines() if not x.startswith("hint:")]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _authed_env(reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"tester:s3cret").decode()}}}))
    return authfile


def test_push_needs_credentials_basic_auth(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    crypt = pytest.importorskip("crypt")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("tester:" + crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)) + "\n")
    work = tmp_path / "authreg"
    work.mkdir()
    reg = Registry(work, htpasswd=htpasswd)
    try:
        repo = _make_source(tmp_path, capsys)
        authfile = _authed_env(reg, tmp_path, monkeypatch)
        dest = f"docker://{reg.host}/private/os:v1"
        line = _one_error(capsys, ["container", "encapsulate", f"--repo={repo}", "os", dest])
        assert line.startswith("error: pushing to ") and "private/os" in line and "401" in line, line
        rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", f"--authfile={authfile}",
                               "os", dest)
        assert rc == 0, err
        info = json.loads(_skopeo("inspect", "--tls-verify=false", "--creds=tester:s3cret", dest))
        assert info["Digest"] == out.strip().removeprefix("Pushed digest: ")
    finally:
        reg.stop()


def test_push_and_mount_with_bearer_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with token_registry(tmp_path / "tokreg", {"tester": "s3cret"}) as (reg, _):
        repo = _make_source(tmp_path, capsys)
        authfile = _authed_env(reg, tmp_path, monkeypatch)
        line = _one_error(capsys, ["container", "encapsulate", f"--repo={repo}", "os",
                                   f"docker://{reg.host}/org/os:v1"])
        assert "401" in line or "unauthorized" in line, line
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
        rc, _, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "os", f"docker://{reg.host}/org/os:v1")
        assert rc == 0, err
        # A mount needs pull on the source and push on the target in one token.
        rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--mount-from=org/os", "--json",
                               "os", f"docker://{reg.host}/org/other:v1")
        assert rc == 0, err
        assert json.loads(out)["push"]["mounted"] == len(json.loads(out)["layers"]) + 1


def _packaged_tree(work: Path, capsys: pytest.CaptureFixture[str], version: str, bumped: str) -> None:
    """Commit a tree of five dpkg packages (``var/lib/dpkg/info/*.list``) to ``work/repo`` branch ``os``."""
    tree = work / f"pkgtree-{version}"
    (tree / f"usr/lib/modules/{KVER}").mkdir(parents=True)
    (tree / f"usr/lib/modules/{KVER}/vmlinuz").write_bytes(b"kernel")
    (tree / "var/lib/dpkg/info").mkdir(parents=True)
    for i in range(5):
        pkg = f"pkg{i}"
        (tree / f"usr/share/{pkg}").mkdir(parents=True)
        noise = b"".join(hashlib.sha256(f"{pkg}-{j}".encode()).digest() for j in range(200))
        (tree / f"usr/share/{pkg}/data").write_bytes(noise + (version.encode() if pkg == bumped else b""))
        (tree / f"var/lib/dpkg/info/{pkg}.list").write_text(f"/usr/share/{pkg}\n/usr/share/{pkg}/data\n")
    repo = work / "repo"
    if not repo.exists():
        assert bootree(capsys, "init", f"--repo={repo}", "--mode=archive")[0] == 0
    rc, _, err = bootree(capsys, "commit", f"--repo={repo}", "-b", "os", f"--add-metadata-string=version={version}",
                         str(tree))
    assert rc == 0, err


def test_package_update_upgrade_fetches_its_layer_and_the_commit_layer(reg: Registry, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    image = f"{reg.host}/pkgs/os:latest"

    def publish(version: str) -> list[dict[str, object]]:
        _packaged_tree(tmp_path, capsys, version, bumped="pkg3")
        rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={tmp_path / 'repo'}", "--max-layers=10",
                               "--json", "os", f"docker://{image}")
        assert rc == 0, err
        layers: list[dict[str, object]] = json.loads(out)["layers"]
        return layers

    v1 = publish("1")
    sysroot = new_sysroot(tmp_path)
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", image)
    assert rc == 0, err
    assert bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")[0] == 0
    v2 = publish("2")
    new = {x["digest"] for x in v2} - {x["digest"] for x in v1}
    assert len(new) == 2 and v2[0]["digest"] in new, "the commit layer and pkg3's layer"
    mark = reg.mark()
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={sysroot}")
    assert rc == 0 and "Queued for next boot" in out, err
    manifest = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{image}"))
    assert set(reg.blob_bytes(since=mark)) == new | {manifest["config"]["digest"]}, "only the changed layers moved"
