"""zstd:chunked images against a real docker-registry (distribution 2.8) on 127.0.0.1 and skopeo:
``upgrade`` v1 → v2 (three files changed in a 300-file layer) fetches about the changed files'
bytes with ``Range`` requests, counted in the registry's access log, and deploys the tree a
full pull of v2 deploys (same merge commit); skopeo copies a bootree zstd:chunked image with its
annotations; an image Debian's skopeo 1.9.3 recompresses to (its older) zstd:chunked does not match
its diff_ids, which bootree refuses."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from registrykit import Registry, access_log, bootree, insecure_registry, new_sysroot

from bootree.oci.zchunked import MANIFEST_CHECKSUM_KEY, MANIFEST_POSITION_KEY, TARSPLIT_POSITION_KEY
from bootree.sysroot import Sysroot

pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("docker-registry", "skopeo")),
                       reason="needs docker-registry and skopeo"),
    pytest.mark.slow,
]
KVER = "6.1.0-zc"
FILES = 300
SIZE = 16384
CHANGED = (7, 150, 299)


def _noise(seed: str, n: int = SIZE) -> bytes:
    return b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(n // 32))


def _commit(work: Path, capsys: pytest.CaptureFixture[str], version: int) -> Path:
    tree = work / f"tree-{version}"
    (tree / f"usr/lib/modules/{KVER}").mkdir(parents=True)
    (tree / f"usr/lib/modules/{KVER}/vmlinuz").write_bytes(b"kernel" * 100)
    (tree / "usr/share/big").mkdir(parents=True)
    (tree / "usr/etc").mkdir(parents=True)
    (tree / "usr/etc/os-release").write_text(f"ID=zc\nVERSION_ID={version}\n")
    for i in range(FILES):
        seed = f"v{version}-{i}" if version > 1 and i in CHANGED else f"f{i}"
        (tree / f"usr/share/big/f{i:03d}").write_bytes(_noise(seed))
    repo = work / "repo"
    if not repo.exists():
        assert bootree(capsys, "init", f"--repo={repo}", "--mode=archive")[0] == 0
    rc, _, err = bootree(capsys, "commit", f"--repo={repo}", "-b", "os", f"--add-metadata-string=version={version}",
                         "--timestamp=@1700000000", str(tree))
    assert rc == 0, err
    return repo


def _listing(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """path -> (mode, uid, gid, content digest or link target) under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            what = (os.readlink(p) if os.path.islink(p) else hashlib.sha256(p.read_bytes()).hexdigest()
                    if os.path.isfile(p) else "")
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, what)
    return out


def _skopeo(*argv: str) -> str:
    return subprocess.run(["skopeo", *argv], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with insecure_registry(tmp_path_factory.mktemp("zchunked-registry")) as r:
        yield r


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _publish(capsys: pytest.CaptureFixture[str], repo: Path, image: str) -> list[dict[str, object]]:
    rc, _, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--compression=zstd:chunked",
                           "--json", "os", f"docker://{image}")
    assert rc == 0, err
    manifest = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{image}"))
    layers: list[dict[str, object]] = manifest["layers"]
    return layers


def _deployed_commit(sysroot: Path) -> str:
    s = Sysroot.open(sysroot)
    return str(s.deployments[0].csum)


def test_upgrade_fetches_about_the_changed_files(reg: Registry, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    image = f"{reg.host}/zc/os:latest"
    repo = _commit(tmp_path, capsys, 1)
    v1 = _publish(capsys, repo, image)
    for layer in v1:
        ann = layer["annotations"]
        assert isinstance(ann, dict) and {MANIFEST_CHECKSUM_KEY, MANIFEST_POSITION_KEY, TARSPLIT_POSITION_KEY} <= set(ann)
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    sysroot = new_sysroot(tmp_path)
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", image)
    assert rc == 0, err
    assert bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")[0] == 0

    _commit(tmp_path, capsys, 2)
    v2 = _publish(capsys, repo, image)
    new = [x for x in v2 if x["digest"] not in {y["digest"] for y in v1}]
    assert len(new) == 1, "one layer holds everything"
    layer = new[0]
    mark = reg.mark()
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={sysroot}")
    assert rc == 0 and "Queued for next boot" in out, err
    sent = reg.blob_bytes(since=mark)
    requests = [r for r in access_log(reg, mark) if r[0] == "GET" and str(layer["digest"]) in r[1]]
    assert all(status == 206 for _, _, status in requests), requests
    changed = len(CHANGED) * SIZE
    got = sent[str(layer["digest"])]
    ann = layer["annotations"]
    assert isinstance(ann, dict)
    meta = int(ann[MANIFEST_POSITION_KEY].split(":")[1]) + int(ann[TARSPLIT_POSITION_KEY].split(":")[1])
    # The changed files (incompressible), the TOC and tar-split, the new commit and dirtrees.
    assert changed <= got <= changed + meta + 16 * 1024, f"{got} bytes of a {layer['size']}-byte layer"
    assert got < int(str(layer["size"])) / 20
    assert int(str(layer["size"])) > 4 * 1024 * 1024

    # The same deployment as a full pull of v2 on a new machine.
    other = new_sysroot(tmp_path / "other")
    mark = reg.mark()
    rc, _, err = bootree(capsys, "switch", f"--sysroot={other}", "--stateroot=demo", image)
    assert rc == 0, err
    assert reg.blob_bytes(since=mark)[str(layer["digest"])] == layer["size"], "a first pull fetches the blob"
    assert bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")[0] == 0
    assert _deployed_commit(sysroot) == _deployed_commit(other), "the same merge commit"
    s = Sysroot.open(sysroot)
    deployed = s.deployment_dir(s.deployments[0])
    o = Sysroot.open(other)
    assert _listing(deployed / "usr") == _listing(o.deployment_dir(o.deployments[0]) / "usr")
    for i in CHANGED:
        assert (deployed / f"usr/share/big/f{i:03d}").read_bytes() == _noise(f"v2-{i}")
    assert (deployed / "usr/share/big/f000").read_bytes() == _noise("f0")


def test_skopeo_copies_and_makes_zstd_chunked(reg: Registry, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    repo = _commit(tmp_path, capsys, 1)
    image = f"{reg.host}/zc/interop:v1"
    ours = _publish(capsys, repo, image)
    # skopeo copies bootree's zstd:chunked layers as they are, annotations included.
    layout = tmp_path / "copied"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{image}", f"oci:{layout}:v1")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    assert [x["digest"] for x in manifest["layers"]] == [x["digest"] for x in ours]
    assert manifest["layers"][0]["annotations"] == ours[0]["annotations"]
    # An image skopeo recompresses to zstd:chunked (its own writer) deploys with bootree.
    gz = f"{reg.host}/zc/gz:v1"
    rc, _, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "os", f"docker://{gz}")
    assert rc == 0, err
    theirs = f"{reg.host}/zc/skopeo:v1"
    _skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-compress-format=zstd:chunked",
            f"docker://{gz}", f"docker://{theirs}")
    raw = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{theirs}"))
    assert raw["layers"][0]["mediaType"].endswith("+zstd")
    # skopeo 1.9.3 (containers/storage of 2022) writes the older variant: ``io.containers.*``
    # annotations and no tar-split, and its tar lacks the end-of-archive blocks while the config
    # keeps the gzip layer's diff_id. bootree checks every layer against its diff_id: a one-line
    # error, nothing deployed.
    ann = raw["layers"][0].get("annotations") or {}
    assert "io.containers.zstd-chunked.manifest-checksum" in ann and MANIFEST_CHECKSUM_KEY not in ann, ann
    sysroot = new_sysroot(tmp_path)
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", theirs)
    lines = [x for x in err.splitlines() if x and not x.startswith("hint:")]
    assert rc == 1 and len(lines) == 1 and "does not match diff_id" in lines[0], err
    assert not Sysroot.open(sysroot).deployments
