"""Container images on the real boot chain (issue 11, item 5): the offline USB-stick update.

v1 and v2 of the test OS (:mod:`osimage`) are built as bootable OCI images with umoci (a base
layer shared by both, then one small layer per version) and pushed by skopeo to a
docker-registry on 127.0.0.1. ``bootree install to-disk docker://…/os:v1`` pulls v1 into the new
disk's repository; the disk boots under qemu (OVMF → systemd-boot → bootree's initramfs) and v1
passes its health checks. A second virtual disk, a FAT "USB stick" holding an ``oci:`` layout of
v2 copied from the registry by skopeo, is attached; inside the VM it is mounted and
``bootree switch oci:/mnt/layout:v2`` stages v2 from it with no network (bootc issue #1806),
fetching only the layer v1 does not have. At shutdown the staged deployment is finalized (the
test OS's init does what ostree-finalize-staged.service does); the next boot is v2, counted,
its checks pass and its entry is blessed; inside it ``status --json`` shows v2's digest booted
and v1's as rollback. The host checks the ESP entries and the origin on the root partition.

Costs: the shared test OS base (``os_base``), three umoci repacks, one install, two boots (about
10 s each with KVM, 1-2 minutes each under TCG). Skipped with the reason without qemu and the
boot chain tools, docker-registry, skopeo, umoci, debugfs, or root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import osimage
from bootbed import KARGS, QEMU_TIMEOUT, entries, kvm_usable, qemu_boot, set_cmd
from test_bootc_registry import Registry

from bootree.install import disk as diskmod
from bootree.sysroot import esp

TOOLS = ("docker-registry", "skopeo", "umoci", "debugfs")
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]
TRIES = 2
REPO = "bootree/test-os"
USB_LABEL = "BOOTREE-USB"
#: Each boot runs bootree three or four times in the guest; under TCG on a busy 2-core machine one
#: Python start is 10-20 s, more than the boot-chain tests' default allows for.
BOOT_TIMEOUT = max(QEMU_TIMEOUT, 900)


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    missing = [t for t in TOOLS if _which(t) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {' '.join(missing)}")
        pytest.skip(f"missing {' '.join(missing)}")


def _run(*argv: str | Path) -> str:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert p.returncode == 0, f"{' '.join(map(str, argv))}: {p.stderr[-2000:]}"
    return p.stdout


@dataclass
class Published:
    """The registry serving v1 and v2, and the digests skopeo reports for them."""

    registry: Registry
    digest: dict[int, str]
    layers: dict[int, list[str]]

    def ref(self, v: int) -> str:
        return f"{self.registry.host}/{REPO}:v{v}"


def build_layout(base: Path, work: Path) -> Path:
    """An OCI layout with v1 = [base, v1's files] and v2 = [base, v1's files, v2's files] (umoci)."""
    lay, bundle = work / "oci", work / "bundle"
    _run("umoci", "init", "--layout", lay)
    _run("umoci", "new", "--image", f"{lay}:base")
    _run("umoci", "config", "--image", f"{lay}:base", "--os", "linux", "--architecture", "amd64",
         "--config.label", "containers.bootc=1", "--config.label", "ostree.bootable=1")
    _run("umoci", "unpack", "--image", f"{lay}:base", bundle)
    rootfs = bundle / "rootfs"
    shutil.rmtree(rootfs)
    shutil.copytree(base, rootfs, symlinks=True)
    _run("umoci", "repack", "--refresh-bundle", "--image", f"{lay}:v1", bundle)
    for v in (1, 2):
        osimage.apply_version(rootfs, v, healthy=True)
        _run("umoci", "repack", "--refresh-bundle", "--image", f"{lay}:v{v}", bundle)
        _run("umoci", "config", "--image", f"{lay}:v{v}", "--config.label", f"org.opencontainers.image.version={v}")
    shutil.rmtree(bundle)
    return lay


@pytest.fixture(scope="module")
def published(os_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    work = tmp_path_factory.mktemp("bootchain-oci")
    lay = build_layout(os_base, work)
    reg = Registry(work)
    conf = work / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))  # plain HTTP to the loopback registry
            digest, layers = {}, {}
            for v in (1, 2):
                dest = f"docker://{reg.host}/{REPO}:v{v}"
                _run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{lay}:v{v}", dest)
                info = json.loads(_run("skopeo", "inspect", "--tls-verify=false", dest))
                digest[v], layers[v] = info["Digest"], info["Layers"]
            yield Published(reg, digest, layers)
    finally:
        reg.stop()


def usb_stick(pub: Published, work: Path) -> tuple[Path, str]:
    """A FAT disk image with an ``oci:`` layout of v2 copied from the registry; the layout's digest of v2."""
    tree = work / "usb"
    tree.mkdir()
    _run("skopeo", "copy", "--src-tls-verify=false", f"docker://{pub.ref(2)}", f"oci:{tree}/layout:v2")
    index = json.loads((tree / "layout/index.json").read_text())
    (desc,) = index["manifests"]
    size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
    img = work / "usb.img"
    _run("mkfs.vfat", "-F", "32", "-n", USB_LABEL, "-C", img, str(max(64 << 10, size * 3 // 2 // 1024)))
    subprocess.run(["mcopy", "-s", "-i", str(img), str(tree / "layout"), "::/"], check=True,
                   env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    return img, str(desc["digest"])


def _debugfs(disk: Path, cmd: str) -> str:
    """Read the root partition of ``disk`` without mounting it."""
    root_off = diskmod.partition_offsets(disk)[1][0]
    return _run("debugfs", "-R", cmd, f"{disk}?offset={root_off}")


def _origins(disk: Path) -> dict[str, str]:
    """Deployment name → its origin file, read from the disk."""
    base = "/ostree/deploy/default/deploy"
    names = [n for n in _debugfs(disk, f"ls -p {base}").split("/") if n.endswith(".origin")]
    return {n[: -len(".origin")]: _debugfs(disk, f"cat {base}/{n}") for n in names}


def _entry_for(names: list[str], csum: str) -> str:
    found = [n for n in names if f"-{csum}." in n]
    assert len(found) == 1, (csum, names)
    return found[0]


SWITCH = f"""set -e
mount -t vfat -o ro "$(findfs LABEL={USB_LABEL})" /mnt
ls /mnt/layout
echo "switch-begin uptime=$(cut -d' ' -f1 /proc/uptime)"
bootree switch oci:/mnt/layout:v2
echo "switch-end uptime=$(cut -d' ' -f1 /proc/uptime)"
echo STATUS-BEGIN
bootree status --json
echo STATUS-END
umount /mnt
"""

STATUS = """echo STATUS-BEGIN
bootree status --json
echo STATUS-END
bootree status
"""


@pytest.mark.heavy(400)
def test_install_from_registry_then_switch_from_usb_stick(published: Published, tmp_path: Path) -> None:
    t_start = time.monotonic()
    timings = [f"accel {'kvm' if kvm_usable() else 'tcg'}"]
    disk = tmp_path / "disk.img"
    t0 = time.monotonic()
    out = _run(sys.executable, "-m", "bootree", "install", "to-disk", f"docker://{published.ref(1)}",
               f"--disk={disk}", *(f"--karg={k}" for k in KARGS), f"--boot-counting-tries={TRIES}")
    timings.append(f"install {time.monotonic() - t0:.1f}s")
    assert f"Image: ostree-unverified-registry:{published.ref(1)}" in out
    assert f"Digest: {published.digest[1]}" in out, out
    origins = _origins(disk)
    assert len(origins) == 1
    v1_name, v1_origin = next(iter(origins.items()))
    v1 = v1_name.split(".")[0]
    assert f"container-image-reference=ostree-unverified-registry:{published.ref(1)}" in v1_origin
    names = entries(disk)
    assert names == [_entry_for(names, v1)] and names[0].endswith(f"+{TRIES}.conf")

    usb, usb_digest = usb_stick(published, tmp_path)
    assert usb_digest == published.digest[2]  # skopeo copied the manifest as the registry has it

    # boot 1: v1 from the registry install; health passes; switch to v2 from the stick, staged
    set_cmd(disk, SWITCH, tmp_path / "scratch")
    b = qemu_boot(disk, tmp_path / "boot1.log", extra_disks=[usb], timeout=BOOT_TIMEOUT)
    timings.append(f"boot1 v{b.version} {b.seconds:.1f}s")
    m = re.search(r"switch-begin uptime=(\S+)\n(?:.*\n)*?switch-end uptime=(\S+)", b.log)
    if m:
        timings.append(f"switch in the guest {float(m.group(2)) - float(m.group(1)):.1f}s")
    assert b.version == 1 and b.health_rc == 0, b.log[-3000:]
    assert "BOOTREE-TEST: cmd end rc=0" in b.log, b.log[-4000:]
    # only v2's own layer crossed from the stick: the base and v1's layer came with the install
    assert "layers already present: 2; layers fetched: 1" in b.log, b.log[-4000:]
    assert "Queued for next boot: oci:/mnt/layout:v2" in b.log and f"Digest: {published.digest[2]}" in b.log
    staged = json.loads(b.between("STATUS-BEGIN", "STATUS-END"))
    assert staged["status"]["staged"]["image"]["imageDigest"] == published.digest[2]
    assert staged["status"]["booted"]["image"]["imageDigest"] == published.digest[1]
    assert "BOOTREE-TEST: finalize-staged rc=0" in b.log, b.log[-3000:]

    names = entries(disk)
    origins = _origins(disk)
    assert len(origins) == 2, origins
    v2_name = next(n for n in origins if not n.startswith(v1))
    v2 = v2_name.split(".")[0]
    assert "container-image-reference=ostree-unverified-image:oci:/mnt/layout:v2" in origins[v2_name]
    assert _entry_for(names, v1).endswith(f"{v1}.0.conf"), names  # v1 was blessed in boot 1
    assert _entry_for(names, v2).endswith(f"+{TRIES}.conf"), names  # v2: the new default, counted
    assert esp.loader_default(names) == _entry_for(names, v2)

    # boot 2: v2, counted; its checks pass and the entry is blessed; status says v2 booted, v1 rollback
    set_cmd(disk, STATUS, tmp_path / "scratch")
    b = qemu_boot(disk, tmp_path / "boot2.log", timeout=BOOT_TIMEOUT)
    timings.append(f"boot2 v{b.version} {b.seconds:.1f}s")
    assert b.version == 2 and b.health_rc == 0, b.log[-3000:]
    assert re.search(rf"marked good \(bootree-\d+-default-{v2}\.0\.conf\)", b.log), b.log[-3000:]
    host = json.loads(b.between("STATUS-BEGIN", "STATUS-END"))
    st = host["status"]
    assert st["booted"]["image"]["imageDigest"] == published.digest[2]
    assert st["booted"]["image"]["image"] == {"image": "/mnt/layout:v2", "transport": "oci"}
    assert st["booted"]["image"]["version"] == "2" and st["booted"]["ostree"]["checksum"] == v2
    assert st["rollback"]["image"]["imageDigest"] == published.digest[1]
    assert st["rollback"]["image"]["image"] == {"image": published.ref(1), "transport": "registry"}
    assert st["rollback"]["ostree"]["checksum"] == v1
    assert st["staged"] is None and st["rollbackQueued"] is False and st["type"] == "bootcHost"
    assert host["spec"]["image"] == {"image": "/mnt/layout:v2", "transport": "oci"}
    names = entries(disk)  # from the host: v2 blessed and the default, v1 kept as the rollback entry
    assert _entry_for(names, v2).endswith(f"{v2}.0.conf") and esp.loader_default(names) == _entry_for(names, v2)
    assert _entry_for(names, v1).endswith(f"{v1}.0.conf")
    timings.append(f"total {time.monotonic() - t_start:.1f}s")
    print("timings:", ", ".join(timings))
