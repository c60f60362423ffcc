"""Image deltas through a real registry: docker-registry (distribution 2.8) on 127.0.0.1.

``container encapsulate --delta-from`` pushes v2 and a delta v1 → v2 as an OCI 1.1 artifact
(distribution 2.8 has no referrers API: the referrers tag schema is written); a device running
v1 upgrades through it, the registry's own access log counting the bytes; the repository ends
as a layer import leaves it (same merge commit, same layer refs). A device running another
digest, a corrupted delta blob and a delta leading to another commit all fall back to layers,
with nothing wrong staged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from registrykit import Registry, bootree, insecure_registry, new_sysroot

from bootree.format.checksum import Checksum
from bootree.oci.export import EncapsulateOptions
from bootree.oci.referrers import referrers_tag
from bootree.repo import Repo
from bootree.sysroot import Sysroot

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="deployments keep the image's owners: needs root"),
    pytest.mark.slow,
]
KVER = "6.1.0-delta"
PACKAGES = 6


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if any(shutil.which(t) is None for t in ("docker-registry", "skopeo")):
        pytest.skip("needs docker-registry and skopeo")
    with insecure_registry(tmp_path_factory.mktemp("delta-registry")) as r:
        yield r


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _noise(seed: str, n: int) -> bytes:
    return b"".join(hashlib.sha256(f"{seed}-{j}".encode()).digest() for j in range(n))


def _cli(*argv: str) -> None:
    from bootree.cli import main

    assert main(list(argv)) == 0, argv


def _commit(work: Path, version: str, branch: str) -> None:
    """A tree of dpkg packages whose data files change slightly from version to version.

    Each package's file is incompressible (its layer moves whole), but v2 differs from v1 by
    a few bytes in most packages: a delta is a small fraction of the changed layers.
    """
    tree = work / f"tree-{branch}"
    (tree / f"usr/lib/modules/{KVER}").mkdir(parents=True)
    (tree / f"usr/lib/modules/{KVER}/vmlinuz").write_bytes(b"kernel" * 100)
    (tree / "usr/etc").mkdir(parents=True)
    (tree / "usr/etc/os-release").write_text(f"VERSION={version}\n")
    (tree / "var/lib/dpkg/info").mkdir(parents=True)
    for i in range(PACKAGES):
        pkg = f"pkg{i}"
        (tree / f"usr/share/{pkg}").mkdir(parents=True)
        data = bytearray(_noise(pkg, 2000))
        if version != "1" and i < PACKAGES - 1:  # the last package stays: its layer is shared
            data[1000 * (i + 1)] ^= 0xFF
            data += version.encode()
        (tree / f"usr/share/{pkg}/data").write_bytes(bytes(data))
        (tree / f"var/lib/dpkg/info/{pkg}.list").write_text(f"/usr/share/{pkg}\n/usr/share/{pkg}/data\n")
    repo = work / "repo"
    if not repo.exists():
        _cli("init", f"--repo={repo}", "--mode=archive")
    _cli("commit", f"--repo={repo}", "-b", branch, f"--add-metadata-string=version={version}",
         "--timestamp=@1700000000", str(tree))


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The publisher's repository: branches v1, v2 and v3 (three versions of one tree)."""
    work = tmp_path_factory.mktemp("delta-publisher")
    for version in ("1", "2", "3"):
        _commit(work, version, f"v{version}")
    return work / "repo"


def _encapsulate(capsys: pytest.CaptureFixture[str], repo: Path, rev: str, image: str,
                 *extra: str) -> dict[str, object]:
    rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={repo}", "--max-layers=8", "--json",
                           *extra, rev, f"docker://{image}")
    assert rc == 0, err
    doc: dict[str, object] = json.loads(out)
    return doc


def _device(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, image: str) -> Path:
    sysroot = new_sysroot(tmp_path / name)
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", image)
    assert rc == 0, err
    assert bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")[0] == 0
    return sysroot


def _refs(sysroot: Path) -> dict[str, str]:
    return {k: str(v) for k, v in Repo.open(sysroot / "ostree/repo").list_refs("ostree/container").items()}


def _staged(sysroot: Path) -> Checksum:
    s = Sysroot.open(sysroot)
    assert s.staged is not None
    return s.staged.csum


def _layers(doc: dict[str, object]) -> dict[str, int]:
    return {str(x["digest"]): int(x["size"]) for x in doc["layers"]}  # type: ignore[attr-defined,index]


def _config_digest(image: str) -> str:
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{image}"], check=True,
                         capture_output=True, text=True).stdout
    return str(json.loads(raw)["config"]["digest"])


def test_upgrade_through_the_delta_gives_the_layer_import_state(reg: Registry, publisher: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    image = f"{reg.host}/delta/os:latest"
    v1 = _encapsulate(capsys, publisher, "v1", image)
    via_delta = _device(tmp_path, capsys, "a", image)
    via_layers = _device(tmp_path, capsys, "b", image)
    v2 = _encapsulate(capsys, publisher, "v2", image, f"--delta-from=docker://{image}")
    delta = v2["delta"]
    assert isinstance(delta, dict)
    assert delta["fromDigest"] == v1["digest"] and delta["referrers"] == "tag", "distribution 2.8: the tag schema"
    index = json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false",
         f"docker://{reg.host}/delta/os:{referrers_tag(str(v2['digest']))}"],
        check=True, capture_output=True, text=True).stdout)
    assert [m["digest"] for m in index["manifests"]] == [delta["digest"]]
    assert index["manifests"][0]["artifactType"] == "application/vnd.bootree.image-delta.v1"

    changed = {d: n for d, n in _layers(v2).items() if d not in _layers(v1)}
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={via_delta}", "--check", "--json")
    assert rc == 0, err
    check = json.loads(out)
    assert check["delta"]["digest"] == delta["digest"]
    assert check["bytesToFetch"] == check["delta"]["size"] < sum(changed.values())

    mark = reg.mark()
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={via_delta}")
    assert rc == 0 and "Queued for next boot" in out, err
    assert f"Fetched delta {delta['digest']}" in out and "warning" not in out + err
    moved = reg.blob_bytes(since=mark)
    config = _config_digest(image)
    assert not set(moved) & set(changed), "no layer moved"
    assert len(set(moved) - {config}) == 2, "the delta and its layer map"
    delta_bytes = sum(n for d, n in moved.items() if d != config)
    assert delta_bytes == check["delta"]["size"]
    assert delta_bytes * 4 < sum(changed.values()), (delta_bytes, sum(changed.values()))

    mark = reg.mark()
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={via_layers}", "--disable-static-deltas")
    assert rc == 0 and "Fetched delta" not in out, err
    assert set(reg.blob_bytes(since=mark)) == set(changed) | {config}
    assert _staged(via_delta) == _staged(via_layers), "the same merge commit, checksum for checksum"
    assert _refs(via_delta) == _refs(via_layers), "the same image and layer refs"
    # What the delta wrote is whole: fsck, and a later upgrade works the same.
    rc, _, err = bootree(capsys, "fsck", f"--repo={via_delta / 'ostree/repo'}")
    assert rc == 0, err
    rc, out, err = bootree(capsys, "status", f"--sysroot={via_delta}", "--format=json")
    assert rc == 0 and json.loads(out)["status"]["staged"]["image"]["imageDigest"] == v2["digest"], err


def test_another_booted_digest_fetches_layers(reg: Registry, publisher: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    image = f"{reg.host}/delta/other:latest"
    _encapsulate(capsys, publisher, "v1", image, "--label=build=a")
    device = _device(tmp_path, capsys, "c", image)
    _encapsulate(capsys, publisher, "v1", image, "--label=build=b")  # same commit, another digest
    v2 = _encapsulate(capsys, publisher, "v2", image, f"--delta-from=docker://{image}")
    assert isinstance(v2["delta"], dict)
    mark = reg.mark()
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={device}")
    assert rc == 0 and "Queued for next boot" in out and "Fetched delta" not in out, err
    assert str(v2["delta"]["digest"]) not in str(reg.blob_bytes(since=mark))  # type: ignore[index]
    assert set(reg.blob_bytes(since=mark)) - {_config_digest(image)} <= set(_layers(v2))


def _blob_file(reg: Registry, digest: str) -> Path:
    hexd = digest.removeprefix("sha256:")
    return reg.data / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def _refused(sysroot: Path, capsys: pytest.CaptureFixture[str], expect: str) -> str:
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={sysroot}")
    assert rc == 0 and "Queued for next boot" in out, err
    lines = [ln for ln in out.splitlines() if ln.startswith("warning: delta")]
    assert len(lines) == 1 and expect in lines[0], out
    assert "Fetched delta" not in out
    return lines[0]


def test_corrupted_delta_blob_is_refused_and_layers_are_fetched(reg: Registry, publisher: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    image = f"{reg.host}/delta/corrupt:latest"
    _encapsulate(capsys, publisher, "v1", image)
    device = _device(tmp_path, capsys, "d", image)
    v2 = _encapsulate(capsys, publisher, "v2", image, f"--delta-from=docker://{image}")
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                          f"docker://{reg.host}/delta/corrupt@{v2['delta']['digest']}"],  # type: ignore[index]
                                         check=True, capture_output=True, text=True).stdout)
    blob = _blob_file(reg, manifest["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    _refused(device, capsys, "digest mismatch")
    commit = Repo.open(device / "ostree/repo").read_commit(_staged(device))
    assert commit.parent == Checksum(str(v2["labels"]["ostree.commit"]))  # type: ignore[index]
    assert bootree(capsys, "fsck", f"--repo={device / 'ostree/repo'}")[0] == 0
    assert not list((device / "ostree/repo/tmp/bootree-oci").glob("*.delta*"))


@pytest.mark.parametrize("case", ["announced", "superblock"])
def test_delta_to_another_commit_is_refused(case: str, reg: Registry, publisher: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A forged v1 → v2 artifact whose delta leads to v3: announced so, or hidden in the superblock."""
    from bootree.delta.compile import generate_delta
    from bootree.delta.parts import DeltaOptions
    from bootree.format.checksum import ObjectType
    from bootree.format.oci import OCI_MANIFEST, Descriptor, digest_of
    from bootree.oci import deltaartifact as da
    from bootree.oci.export import write_image
    from bootree.oci.push import BlobToPush, RegistryPusher, push_blobs
    from bootree.oci.reference import DockerReference
    from bootree.oci.referrers import Referrer, announce_referrer

    image = f"{reg.host}/delta/wrong-{case}:latest"
    v1 = _encapsulate(capsys, publisher, "v1", image)
    device = _device(tmp_path, capsys, "e", image)
    v2 = _encapsulate(capsys, publisher, "v2", image)
    repo = Repo.open(publisher)
    exported = write_image(repo, "v2", tmp_path / "blobs", EncapsulateOptions(max_layers=8))
    assert exported.manifest_digest == v2["digest"], "encapsulate is reproducible"
    c1, c2, c3 = (repo.resolve_rev(f"v{i}") for i in (1, 2, 3))
    files = {"map": da.LayerMap.build(tuple(x.digest for x in exported.layers), exported.layer_objects).to_bytes(),
             "empty": da.EMPTY_BLOB}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    generate_delta(repo, c3, from_commit=c1, options=DeltaOptions(format="bootree", inline=True, min_fallback_size=0),
                   filename=tmp_path / "delta")
    sb = (tmp_path / "delta").read_bytes()
    ann = {da.FROM_DIGEST: str(v1["digest"]), da.FROM_COMMIT: str(c1), da.TO_DIGEST: str(v2["digest"]),
           da.TO_COMMIT: str(c3 if case == "announced" else c2), da.FORMAT: "bootree"}
    manifest = da.build_artifact(Descriptor(OCI_MANIFEST, exported.manifest_digest, exported.manifest_size),
                                 Descriptor(da.DELTA_MEDIA_TYPE, digest_of(sb), len(sb)),
                                 Descriptor(da.LAYERMAP_MEDIA_TYPE, digest_of(files["map"]), len(files["map"])), ann)
    digest = digest_of(manifest)
    blobs = [BlobToPush(digest_of(sb), len(sb), tmp_path / "delta")]
    blobs += [BlobToPush(digest_of(data), len(data), tmp_path / name) for name, data in files.items()]
    ref = DockerReference.parse(image)
    push_blobs(DockerReference.parse(f"{ref.registry_host}/{ref.repository}@{digest}"), blobs, manifest, digest,
               OCI_MANIFEST)
    pusher = RegistryPusher(ref.registry_host)
    with pusher:
        referrer = Referrer(Descriptor(OCI_MANIFEST, digest, len(manifest)), da.ARTIFACT_TYPE, ann)
        assert announce_referrer(pusher, ref.repository, exported.manifest_digest, referrer) == "tag"

    expect = f"the delta leads to {c3}, the image's ostree.commit is {c2}" if case == "announced" \
        else f"is {c1} → {c3}, its artifact says {c1} → {c2}"
    _refused(device, capsys, expect)
    dev_repo = Repo.open(device / "ostree/repo")
    assert dev_repo.read_commit(_staged(device)).parent == c2
    assert not dev_repo.has_object(ObjectType.COMMIT, c3), "nothing of the bad delta was published"



def test_oci_layout_switch_through_a_signed_delta(publisher: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``oci:DIR`` as the target: the artifact is listed in ``index.json``; ``switch`` to v2 uses it.

    A signed delta is applied where no key is configured (ostree's rule) and refused where the
    repository sets ``core.sign-verify-deltas`` without a key to check it with.
    """
    from bootree.sign import SecretKey
    from bootree.sign.delta import is_signed

    key = SecretKey.generate()
    secret = tmp_path / "secret.ed25519"
    secret.write_text(key.base64 + "\n")
    layout = tmp_path / "oci"
    _cli("container", "encapsulate", f"--repo={publisher}", "--max-layers=8", "v1", f"oci:{layout}:v1")
    devices = [_device(tmp_path, capsys, name, f"oci:{layout}:v1") for name in ("la", "lb", "lc")]
    rc, out, err = bootree(capsys, "container", "encapsulate", f"--repo={publisher}", "--max-layers=8",
                           f"--delta-from=oci:{layout}:v1", f"--sign={secret}", "v2", f"oci:{layout}:v2")
    assert rc == 0, err
    assert "Delta digest: sha256:" in out and "layout index" in out
    index = json.loads((layout / "index.json").read_bytes())
    art = [m for m in index["manifests"] if m.get("artifactType") == "application/vnd.bootree.image-delta.v1"]
    assert len(art) == 1
    manifest = json.loads((layout / "blobs/sha256" / art[0]["digest"].removeprefix("sha256:")).read_bytes())
    assert is_signed((layout / "blobs/sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes())

    rc, out, err = bootree(capsys, "switch", f"--sysroot={devices[0]}", f"oci:{layout}:v2")
    assert rc == 0 and f"Fetched delta {art[0]['digest']}" in out, out + err
    rc, out, err = bootree(capsys, "switch", f"--sysroot={devices[1]}", "--disable-static-deltas", f"oci:{layout}:v2")
    assert rc == 0 and "Fetched delta" not in out, err
    assert _staged(devices[0]) == _staged(devices[1]) and _refs(devices[0]) == _refs(devices[1])

    strict = Repo.open(devices[2] / "ostree/repo")
    strict.config.set("core", "sign-verify-deltas", "true")
    strict.save_config()
    rc, out, err = bootree(capsys, "switch", f"--sysroot={devices[2]}", f"oci:{layout}:v2")
    assert rc == 0 and "Fetched delta" not in out, err
    assert next(ln for ln in out.splitlines() if ln.startswith("warning: delta")).endswith("; fetching layers")
    assert "Key is mandatory" in out
    assert _staged(devices[2]) == _staged(devices[1])


@pytest.mark.parametrize("signed", [True, False])
def test_a_layer_map_the_delta_does_not_name_is_refused(signed: bool, publisher: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The superblock names its layer map's digest (signed, it vouches for the map): a forged
    artifact that pairs the genuine delta with another layer map is refused before anything is
    applied, with or without a signature, and the layers are fetched instead."""
    from bootree.delta.offline import open_superblock_file
    from bootree.format.oci import digest_of
    from bootree.oci import deltaartifact as da
    from bootree.sign import SecretKey

    key = SecretKey.generate()
    secret, public = tmp_path / "secret.ed25519", tmp_path / "public.ed25519"
    secret.write_text(key.base64 + "\n")
    public.write_text(key.public.base64 + "\n")
    layout = tmp_path / "oci"
    _cli("container", "encapsulate", f"--repo={publisher}", "--max-layers=8", "v1", f"oci:{layout}:latest")
    device = _device(tmp_path, capsys, "lm", f"oci:{layout}:latest")
    sign = [f"--sign={secret}"] if signed else []
    _cli("container", "encapsulate", f"--repo={publisher}", "--max-layers=8", f"--delta-from=oci:{layout}:latest",
         *sign, "v2", f"oci:{layout}:latest")
    blobs = layout / "blobs/sha256"
    index = json.loads((layout / "index.json").read_bytes())
    entry = next(m for m in index["manifests"] if m.get("artifactType") == da.ARTIFACT_TYPE)
    art = json.loads((blobs / entry["digest"].removeprefix("sha256:")).read_bytes())
    delta_digest, map_digest = art["layers"][0]["digest"], art["layers"][1]["digest"]
    sbf = open_superblock_file(blobs / delta_digest.removeprefix("sha256:"))
    assert sbf.signed is signed
    assert sbf.superblock.get(da.LAYERMAP_KEY) == map_digest, "the superblock names its layer map"

    # The forgery: the first object moved to another layer, the artifact re-listed with that map.
    lmap = da.LayerMap.from_bytes((blobs / map_digest.removeprefix("sha256:")).read_bytes())
    moved = ((lmap.assignment[0] + 1) % len(lmap.layers)).to_bytes(1, "big")
    forged = da.LayerMap(lmap.layers, moved + lmap.assignment[1:]).to_bytes()
    (blobs / digest_of(forged).removeprefix("sha256:")).write_bytes(forged)
    art["layers"][1].update(digest=digest_of(forged), size=len(forged))
    raw = json.dumps(art).encode()
    (blobs / digest_of(raw).removeprefix("sha256:")).write_bytes(raw)
    entry.update(digest=digest_of(raw), size=len(raw))
    (layout / "index.json").write_text(json.dumps(index))

    keys = [f"--keys-file={public}"] if signed else []  # signed: the signature is checked, and holds
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={device}", *keys)
    assert rc == 0, err
    assert "Fetched delta" not in out
    warning = next(ln for ln in out.splitlines() if ln.startswith("warning: delta"))
    assert f"names layer map {map_digest}, its artifact carries {digest_of(forged)}" in warning
    assert warning.endswith("; fetching layers")
    dev_repo = Repo.open(device / "ostree/repo")
    assert dev_repo.read_commit(_staged(device)).parent == Repo.open(publisher).resolve_rev("v2")
