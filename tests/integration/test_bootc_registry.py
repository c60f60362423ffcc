"""bootc verbs against a real registry: docker-registry (distribution 2.8) on 127.0.0.1,
images built by umoci and pushed by skopeo (bootc-oci.md §4).

What is checked: ``switch`` into a directory sysroot gives the expected merged tree file by
file (modes, symlinks, hardlinks, whiteouts, opaque directories, /etc → /usr/etc); ``upgrade``
after a newer push fetches only the changed layer, counted in the registry's own access log;
``rollback``; ``status --json`` against a JSON schema written from bootc-oci.md §1.8; bad input
ends with one ``error:`` line and nothing staged.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from registrykit import Registry, bootree, insecure_registry, new_sysroot, token_registry, tree_listing

from bootree.sysroot import Sysroot, ops

TOOLS = ("docker-registry", "skopeo", "umoci")
pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS), reason="needs docker-registry, skopeo and umoci"),
    pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack and bare-user deployments need root here"),
    pytest.mark.slow,
]

SCHEMA = json.loads((Path(__file__).parent / "bootc-host.schema.json").read_text())
KVER = "6.1.0-demo"


def _run(*argv: str, cwd: Path | None = None) -> None:
    subprocess.run(argv, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _tar_layer(path: Path, members: list[tuple[str, bytes | None]]) -> None:
    """A plain tar for ``umoci raw add-layer`` (None = directory)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))


def build_images(work: Path) -> Path:
    """An OCI layout with v1 (three layers: base, edit + whiteout, opaque dir) and v2 (+1 layer)."""
    oci = work / "oci"
    _run("umoci", "init", "--layout", str(oci))
    _run("umoci", "new", "--image", f"{oci}:v1")
    _run("umoci", "config", "--image", f"{oci}:v1", "--os", "linux", "--architecture", "amd64",
         "--config.label", "containers.bootc=1", "--config.label", "ostree.bootable=1",
         "--config.label", "org.opencontainers.image.version=1.0")
    bundle = work / "bundle"
    _run("umoci", "unpack", "--image", f"{oci}:v1", str(bundle))
    rf = bundle / "rootfs"
    for d in ("usr/bin", f"usr/lib/modules/{KVER}", "etc", "usr/share/demo", "var/lib/demo"):
        (rf / d).mkdir(parents=True, exist_ok=True)
    (rf / "usr/bin/hello").write_text("#!/bin/sh\necho hi\n")
    os.chmod(rf / "usr/bin/hello", 0o755)
    os.link(rf / "usr/bin/hello", rf / "usr/bin/hello-hardlink")
    os.symlink("hello", rf / "usr/bin/hello-symlink")
    (rf / f"usr/lib/modules/{KVER}/vmlinuz").write_text("kernel\n")
    (rf / f"usr/lib/modules/{KVER}/initramfs.img").write_text("initrd\n")
    (rf / "etc/demo.conf").write_text("a=1\n")
    (rf / "usr/share/demo/obsolete.txt").write_text("old\n")
    (rf / "usr/share/demo/keep.txt").write_text("keep\n")
    (rf / "usr/share/demo/private").write_text("p\n")
    os.chmod(rf / "usr/share/demo/private", 0o600)
    (rf / "var/lib/demo/state").write_text("state\n")
    _run("umoci", "repack", "--refresh-bundle", "--image", f"{oci}:v1", str(bundle))
    (rf / "usr/share/demo/obsolete.txt").unlink()
    (rf / "etc/demo.conf").write_text("a=2\n")
    (rf / "usr/share/demo/new.txt").write_text("new\n")
    _run("umoci", "repack", "--refresh-bundle", "--image", f"{oci}:v1", str(bundle))
    l3 = work / "layer3.tar"
    _tar_layer(l3, [("usr/", None), ("usr/share/", None), ("usr/share/demo/", None),
                    ("usr/share/demo/.wh..wh..opq", b""), ("usr/share/demo/only.txt", b"only\n")])
    _run("umoci", "raw", "add-layer", "--image", f"{oci}:v1", "--tag", "v1", str(l3))
    l4 = work / "layer4.tar"
    _tar_layer(l4, [("usr/", None), ("usr/bin/", None), ("usr/bin/v2-tool", b"v2\n" * 1000)])
    _run("umoci", "raw", "add-layer", "--image", f"{oci}:v1", "--tag", "v2", str(l4))
    _run("umoci", "config", "--image", f"{oci}:v2", "--config.label", "org.opencontainers.image.version=2.0")
    return oci


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    work = tmp_path_factory.mktemp("bootc-registry")
    images = build_images(work)
    with insecure_registry(work) as reg:
        yield reg, images


@pytest.fixture(autouse=True)
def _mutable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")


def push(reg: Registry, images: Path, tag: str, repo: str) -> str:
    ref = f"docker://{reg.host}/{repo}"
    _run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{images}:{tag}", ref)
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", ref], check=True, capture_output=True, text=True)
    return str(json.loads(out.stdout)["Digest"])


def _deployment_root(sysroot: Path, index: int = 0) -> Path:
    s = Sysroot.open(sysroot)
    return s.deployment_dir(s.deployments[index])


def test_switch_upgrade_rollback_status(env: tuple[Registry, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    reg, images = env
    repo = "demo/os-main"
    d1 = push(reg, images, "v1", f"{repo}:latest")
    sysroot = new_sysroot(tmp_path)
    image = f"{reg.host}/{repo}:latest"
    m0 = reg.mark()

    rc, out, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", image)
    assert rc == 0, err
    assert f"Queued for next boot: {image}" in out and f"Digest: {d1}" in out
    root = _deployment_root(sysroot)
    listing = tree_listing(root / "usr")
    expected_usr = {
        "bin": ("d", 0o755, ""),
        "bin/hello": ("f", 0o755, "#!/bin/sh\necho hi\n"),
        "bin/hello-hardlink": ("f", 0o755, "#!/bin/sh\necho hi\n"),
        "bin/hello-symlink": ("l", 0o777, "hello"),
        "lib": ("d", 0o755, ""), "lib/modules": ("d", 0o755, ""), f"lib/modules/{KVER}": ("d", 0o755, ""),
        f"lib/modules/{KVER}/vmlinuz": ("f", 0o644, "kernel\n"),
        f"lib/modules/{KVER}/initramfs.img": ("f", 0o644, "initrd\n"),
        "share": ("d", 0o755, ""), "share/demo": ("d", 0o755, ""),
        "share/demo/only.txt": ("f", 0o644, "only\n"),
        "etc": ("d", 0o755, ""), "etc/demo.conf": ("f", 0o644, "a=2\n"),
    }
    assert listing == expected_usr
    assert os.stat(root / "usr/bin/hello").st_ino == os.stat(root / "usr/bin/hello-hardlink").st_ino
    assert (root / "etc/demo.conf").read_text() == "a=2\n"
    origin = Sysroot.open(sysroot).deployments[0].origin
    assert origin is not None and origin.container_image_reference == f"ostree-unverified-registry:{image}"
    v1_bytes = reg.blob_bytes(since=m0)
    manifest1 = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{image}"],
                                          check=True, capture_output=True, text=True).stdout)
    assert set(v1_bytes) == {x["digest"] for x in manifest1["layers"]} | {manifest1["config"]["digest"]}

    rc, out, _ = bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")
    assert rc == 0
    rc, out, _ = bootree(capsys, "upgrade", f"--sysroot={sysroot}")
    assert rc == 0 and out.strip() == "No update available."
    rc, out, _ = bootree(capsys, "switch", f"--sysroot={sysroot}", image)
    assert rc == 0 and out.strip() == "Image specification is unchanged."

    d2 = push(reg, images, "v2", f"{repo}:latest")
    rc, out, _ = bootree(capsys, "upgrade", f"--sysroot={sysroot}", "--check", "--json")
    check = json.loads(out)
    assert check["updateAvailable"] and check["imageDigest"] == d2 and len(check["newLayers"]) == 1
    before_upgrade = reg.blob_bytes(since=m0)
    rc, out, err = bootree(capsys, "upgrade", f"--sysroot={sysroot}")
    assert rc == 0, err
    assert f"Queued for next boot: {image}" in out and "Version: 2.0" in out
    manifest2 = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{image}"],
                                          check=True, capture_output=True, text=True).stdout)
    new_layer = manifest2["layers"][-1]
    after = reg.blob_bytes(since=m0)
    # The no-op upgrade and the unchanged switch fetched no blob at all (manifest only).
    assert before_upgrade == {**v1_bytes, manifest2["config"]["digest"]: manifest2["config"]["size"]}
    fetched = {k: after[k] - before_upgrade.get(k, 0) for k in after if after[k] != before_upgrade.get(k, 0)}
    # Only the new layer and the new config crossed the wire; v1's three layers did not.
    assert fetched == {new_layer["digest"]: new_layer["size"], manifest2["config"]["digest"]: manifest2["config"]["size"]}

    rc, out, _ = bootree(capsys, "status", f"--sysroot={sysroot}", "--json")
    host = json.loads(out)
    jsonschema.validate(host, SCHEMA)
    assert host["status"]["staged"]["image"]["imageDigest"] == d2
    assert host["status"]["booted"]["image"]["imageDigest"] == d1
    assert host["spec"]["image"] == {"image": image, "transport": "registry"}

    rc, _, _ = bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")
    assert rc == 0
    assert (_deployment_root(sysroot) / "usr/bin/v2-tool").is_file()
    rc, out, _ = bootree(capsys, "rollback", f"--sysroot={sysroot}")
    assert rc == 0 and out.strip() == "Next boot: rollback deployment"
    rc, out, _ = bootree(capsys, "status", f"--sysroot={sysroot}", "--format=json")
    host = json.loads(out)
    jsonschema.validate(host, SCHEMA)
    assert host["status"]["rollbackQueued"] is True and host["spec"]["bootOrder"] == "rollback"
    assert host["status"]["booted"]["image"]["imageDigest"] == d2
    assert host["status"]["rollback"]["image"]["imageDigest"] == d1
    rc, _, _ = bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")
    rc, out, _ = bootree(capsys, "status", f"--sysroot={sysroot}", "--json", "--booted")
    assert json.loads(out)["status"]["booted"]["image"]["imageDigest"] == d1


def _one_error_nothing_staged(capsys: pytest.CaptureFixture[str], sysroot: Path, argv: list[str],
                              match: str) -> None:
    s0 = Sysroot.open(sysroot)
    before = [d.key() for d in s0.deployments]
    refs_before = s0.repo.refs.list()
    rc, _, err = bootree(capsys, *argv)
    assert rc == 1
    lines = [x for x in err.splitlines() if not x.startswith("hint:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(match, lines[0]), lines[0]
    s = Sysroot.open(sysroot)
    assert s.staged is None
    assert [d.key() for d in s.deployments] == before
    assert s.repo.refs.list() == refs_before, "no layer or image ref may move"


def _push_layout(reg: Registry, layout: Path, tag: str, repo: str) -> None:
    _run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{reg.host}/{repo}")


def _layout_with(work: Path, images: Path, layer: bytes | None, *, arch: str = "amd64",
                 no_kernel: bool = False) -> Path:
    """A copy of v1 with an extra raw layer (or changes) for the bad-input cases."""
    lay = work / "bad-oci"
    shutil.copytree(images, lay)
    if layer is not None:
        p = work / "bad.tar"
        p.write_bytes(layer)
        _run("umoci", "raw", "add-layer", "--image", f"{lay}:v1", "--tag", "bad", str(p))
    else:
        _run("umoci", "config", "--image", f"{lay}:v1", "--tag", "bad", "--architecture", arch)
    if no_kernel:
        p = work / "nok.tar"
        p.write_bytes(_raw_tar([("usr/lib/modules/.wh." + KVER, b"")]))
        _run("umoci", "raw", "add-layer", "--image", f"{lay}:v1", "--tag", "bad", str(p))
    return lay


def _raw_tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(("case", "match"), [
    ("dotdot", r"escapes the root"),
    ("platform", r"arm64"),
    ("nokernel", r"no kernel"),
    ("digest", r"digest mismatch|does not match"),
])
def test_bad_images_leave_nothing_staged(env: tuple[Registry, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], case: str, match: str) -> None:
    reg, images = env
    repo = f"demo/bad-{case}"
    sysroot = new_sysroot(tmp_path)
    good = f"{reg.host}/demo/os-good-{case}:latest"
    push(reg, images, "v1", good.split("/", 1)[1])
    assert bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", good)[0] == 0
    bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")
    if case == "dotdot":
        lay = _layout_with(tmp_path, images, _raw_tar([("usr/../../escape", b"x")]))
    elif case == "platform":
        lay = _layout_with(tmp_path, images, None, arch="arm64")
    elif case == "nokernel":
        lay = _layout_with(tmp_path, images, None, no_kernel=True)
    else:
        lay = _layout_with(tmp_path, images, _raw_tar([("usr/share/extra", b"e" * 4096)]))
    _push_layout(reg, lay, "bad", f"{repo}:latest")
    if case == "digest":
        # Corrupt the stored blob of the last layer in the registry's storage (same size).
        man = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                         f"docker://{reg.host}/{repo}:latest"], check=True, capture_output=True,
                                        text=True).stdout)
        digest = man["layers"][-1]["digest"][7:]
        data_dir = reg.data / "docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"
        blob = bytearray(data_dir.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        data_dir.write_bytes(bytes(blob))
    _one_error_nothing_staged(capsys, sysroot, ["switch", f"--sysroot={sysroot}", f"{reg.host}/{repo}:latest"], match)


def _manifest(host: str, repo: str, creds: str | None = None) -> dict[str, object]:
    argv = ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}"]
    if creds:
        argv.insert(2, f"--creds={creds}")
    out = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    assert isinstance(out, dict)
    return out


def test_interrupted_blob_resumes_with_range(env: tuple[Registry, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    reg, images = env
    repo = "demo/os-resume:latest"
    push(reg, images, "v1", repo)
    layer = max(_manifest(reg.host, repo)["layers"], key=lambda x: x["size"])  # type: ignore[arg-type, index]
    digest, size = layer["digest"], layer["size"]
    sysroot = new_sysroot(tmp_path)
    blobdir = sysroot / "ostree/repo/tmp/bootree-oci"
    blobdir.mkdir(parents=True)
    stored = reg.data / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    half = size // 2
    # What an interrupted earlier run leaves: the first half of the blob.
    (blobdir / (digest.replace(":", "-") + ".partial")).write_bytes(stored.read_bytes()[:half])
    mark = reg.mark()
    rc, _, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", f"{reg.host}/{repo}")
    assert rc == 0, err
    assert reg.blob_bytes(statuses=("206",), since=mark).get(digest) == size - half
    assert digest not in reg.blob_bytes(statuses=("200",), since=mark)
    assert not list(blobdir.iterdir()), "verified blobs are removed once imported"


def _private_image(reg: Registry, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   repo: str) -> tuple[str, Path]:
    """Push v1 with credentials; point bootree at the registry with no credentials anywhere."""
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
    _run("skopeo", "copy", "--dest-tls-verify=false", "--dest-creds=tester:s3cret", f"oci:{images}:v1",
         f"docker://{reg.host}/{repo}:latest")
    sysroot = new_sysroot(tmp_path)
    ops.os_init(Sysroot.open(sysroot), "demo")
    return f"{reg.host}/{repo}:latest", sysroot


def test_basic_auth_401_then_auth_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch, env: tuple[Registry, Path]) -> None:
    crypt = pytest.importorskip("crypt")
    _, images = env
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("tester:" + crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)) + "\n")
    work = tmp_path / "authreg"
    work.mkdir()
    reg = Registry(work, htpasswd=htpasswd)
    try:
        image, sysroot = _private_image(reg, images, tmp_path, monkeypatch, "private/os")
        _one_error_nothing_staged(capsys, sysroot, ["switch", f"--sysroot={sysroot}", "--stateroot=demo", image],
                                  r"401|authentication required")
        import base64

        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"tester:s3cret").decode()}}}))
        rc, out, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo",
                               f"--authfile={authfile}", image)
        assert rc == 0, err
        assert "Queued for next boot" in out
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
        bootree(capsys, "admin", "boot", f"--sysroot={sysroot}")
        rc, out, err = bootree(capsys, "upgrade", f"--sysroot={sysroot}")
        assert rc == 0 and out.strip() == "No update available.", err
    finally:
        reg.stop()


def test_bearer_token_flow_with_a_real_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, env: tuple[Registry, Path]) -> None:
    import base64

    _, images = env
    with token_registry(tmp_path / "tokreg", {"tester": "s3cret"}) as (reg, issuer):
        image, sysroot = _private_image(reg, images, tmp_path, monkeypatch, "org/os")
        before = issuer.requests
        # Anonymous: the issuer hands out a token without access, the registry still says 401.
        _one_error_nothing_staged(capsys, sysroot, ["switch", f"--sysroot={sysroot}", "--stateroot=demo", image],
                                  r"401|unauthorized")
        assert issuer.requests > before
        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"tester:s3cret").decode()}}}))
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
        rc, out, err = bootree(capsys, "switch", f"--sysroot={sysroot}", "--stateroot=demo", image)
        assert rc == 0, err
        assert "Queued for next boot" in out
