"""``install to-disk IMAGE``: the first deployment pulled from a container image (``oci:`` layouts here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "oci"))
from ocigen import Entry, base_layers, write_layout  # type: ignore[import-not-found]

from bootree.cli import main
from bootree.cli.install_cmds import image_source
from bootree.errors import ImageError
from bootree.host.model import build_host
from bootree.host.provision import ImageInstallSource
from bootree.install import disk as diskmod
from bootree.install.todisk import InstallOptions, prepare_sysroot_from
from bootree.oci.reference import OstreeImageReference, Transport, blob_ref, image_ref
from bootree.sysroot import Sysroot, esp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sysroot's bare repo needs root")


@pytest.fixture(autouse=True)
def _mutable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")


@pytest.fixture
def sdboot(tmp_path: Path) -> Path:
    p = tmp_path / "sd-boot.efi"
    p.write_bytes(b"MZ sd-boot")
    return p


def test_image_source_parsing() -> None:
    assert image_source("os/stable", None) is None
    assert image_source("0123abcd", None) is None
    ref = image_source("docker://127.0.0.1:5000/os/main:v1", None)
    assert ref is not None and str(ref) == "ostree-unverified-registry:127.0.0.1:5000/os/main:v1"
    ref = image_source("oci:/media/usb/layout:v2", None)
    assert ref is not None and ref.image.transport is Transport.OCI
    assert str(ref) == "ostree-unverified-image:oci:/media/usb/layout:v2"
    ref = image_source("quay.io/x/y:1", "registry")
    assert ref is not None and str(ref) == "ostree-unverified-registry:quay.io/x/y:1"
    ref = image_source("ostree-unverified-registry:quay.io/x/y:1", None)
    assert ref is not None and ref.image.name == "quay.io/x/y:1"


def test_first_deployment_from_an_oci_layout(tmp_path: Path, sdboot: Path) -> None:
    lay = tmp_path / "lay"
    digest = write_layout(lay, base_layers(), tag="v1", labels={"org.opencontainers.image.version": "1.0"})
    ref = OstreeImageReference.parse(f"oci:{lay}:v1")
    source = ImageInstallSource(ref)
    root, e = tmp_path / "root", tmp_path / "esp"
    sysroot, dep = prepare_sysroot_from(source, root, e, options=InstallOptions(systemd_boot=sdboot, tries=2))
    assert source.pulled is not None and source.pulled.state.manifest_digest == digest
    assert source.pulled.layers_fetched == 3
    assert dep.origin is not None and dep.origin.container_image_reference == f"ostree-unverified-image:oci:{lay}:v1"
    assert dep.origin.refspec is None
    repo = Sysroot.open(root).repo
    # ostree-ext's store ships with the disk: a later switch to an image sharing layers fetches only the rest
    assert repo.try_resolve_rev(image_ref(ref.image)) == dep.csum
    manifest = json.loads((lay / "blobs/sha256" / digest[7:]).read_text())
    for layer in manifest["layers"]:
        assert repo.try_resolve_rev(blob_ref(layer["digest"])) is not None
    # the image's /var seeds the stateroot's /var; the ESP has the counted first entry
    assert (root / "ostree/deploy/default/var/lib/demo/state").read_bytes() == b"s"
    assert esp.list_entries(e) == [f"bootree-1-default-{dep.csum}.0+2.conf"]
    host = build_host(Sysroot.open(root)).to_json()
    (entry,) = host["status"]["otherDeployments"]
    assert entry["image"]["imageDigest"] == digest and entry["image"]["version"] == "1.0"
    assert entry["image"]["image"] == {"image": f"{lay}:v1", "transport": "oci"}
    assert sysroot.repo.config.get("bootree", "esp") == "boot/efi"


def test_an_image_that_cannot_be_installed_writes_nothing(tmp_path: Path, sdboot: Path) -> None:
    lay = tmp_path / "lay"
    write_layout(lay, [[Entry("usr/bin/tool", data=b"t")]], tag="nokernel")
    root = tmp_path / "root"
    with pytest.raises(ImageError, match="no image tagged 'nope'"):
        prepare_sysroot_from(ImageInstallSource(OstreeImageReference.parse(f"oci:{lay}:nope")), root,
                             tmp_path / "esp", options=InstallOptions(systemd_boot=sdboot))
    assert not root.exists(), "a wrong tag is found before anything is written"
    with pytest.raises(ImageError, match="no kernel"):
        prepare_sysroot_from(ImageInstallSource(OstreeImageReference.parse(f"oci:{lay}:nokernel")), root,
                             tmp_path / "esp", options=InstallOptions(systemd_boot=sdboot))
    assert not Sysroot.open(root).deployments


def _need_disk_tools() -> None:
    missing = [n for n, p in diskmod.required_tools().items() if p is None]
    missing += [] if shutil.which("debugfs", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") else ["debugfs"]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {missing}")
        pytest.skip(f"missing {' '.join(missing)} (gdisk, dosfstools, mtools, e2fsprogs)")


def test_cli_install_to_disk_from_an_oci_layout(tmp_path: Path, sdboot: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _need_disk_tools()
    lay = tmp_path / "lay"
    digest = write_layout(lay, base_layers(), tag="v1")
    disk = tmp_path / "disk.img"
    argv = ["install", "to-disk", f"oci:{lay}:v1", f"--disk={disk}", f"--systemd-boot={sdboot}", "--esp-size=40M",
            "--size=300M", "--boot-counting-tries=2"]
    rc = main([*argv, "--extra-ref=os/v2"])
    assert rc == 1 and not disk.exists()
    assert capsys.readouterr().err.startswith("error: --extra-ref copies refs of --repo")
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"Image: ostree-unverified-image:oci:{lay}:v1" in out and f"Digest: {digest}" in out
    # read the origin back from the root partition of the finished disk
    (_, _), (root_off, _) = diskmod.partition_offsets(disk)
    fs = f"{disk}?offset={root_off}"

    def debugfs(cmd: str) -> str:
        return subprocess.run(["debugfs", "-R", cmd, fs], capture_output=True, text=True, check=True).stdout

    names = [n for n in debugfs("ls -p /ostree/deploy/default/deploy").split("/") if n.endswith(".origin")]
    assert len(names) == 1, names
    origin = debugfs(f"cat /ostree/deploy/default/deploy/{names[0]}")
    assert f"container-image-reference=ostree-unverified-image:oci:{lay}:v1" in origin
    assert diskmod.esp_list(disk, diskmod.partition_offsets(disk)[0][0])[0].endswith("+2.conf")
