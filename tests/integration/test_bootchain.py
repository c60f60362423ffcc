"""The real boot chain under qemu (KVM when usable, else TCG; :mod:`bootbed`): OVMF → systemd-boot → BLS entry with boot counting →
Debian kernel + bootree's initramfs (prepare-root) → a deployment running bootree's health checks.

Issue 5, item 1 (:func:`test_counting_fallback_and_recovery`): v1 is installed with
``install to-disk``, boots and is marked good; v2 is deployed *inside* the VM and fails its
required health check on every boot; after its tries the loader boots v1 by itself; inside v1
``status --json`` says v2 failed, ``upgrade`` refuses v2 again; v3 is deployed, passes and stays
the default.

Issue 5, item 2 (:func:`test_power_cut_during_esp_update`): the ESP writer is SIGKILLed before
each of its file operations; every resulting ESP is checked against a model of systemd-boot and
each distinct one is booted for real: the machine always boots the old or the new default.

Costs: one image build per run, shared by the xdist workers (Debian packages cached under
~/.cache/bootree-test), about
6 full boots plus a few short ones at 10–40 s each under TCG. Skipped, with the reason, where
qemu, OVMF, systemd-boot, busybox-static, mtools, dosfstools or gdisk are missing (CI installs them).
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
import bootbed
import osimage
from bootbed import KARGS, Boot, entries, esp_offset, qemu_boot, set_cmd

from bootree.install import disk as diskmod
from bootree.install.todisk import InstallOptions, install_to_disk, prepare_sysroot
from bootree.repo import Repo, RepoMode
from bootree.sysroot import DeployOptions, Origin, Sysroot, deploy, esp

# Several boots under emulation: more than pytest.ini's 600 s per test on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(autouse=True)
def _tools() -> None:
    """Skip where the boot-chain tools are missing; under CI (which installs them) fail instead."""
    missing = osimage.missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the boot chain tools: {' '.join(missing)}")
        pytest.skip(f"boot chain tools missing: {' '.join(missing)}")

TRIES = 2


@dataclass
class Images:
    """Three committed versions of the test OS in an archive repo (v2's required check fails)."""

    repo: Path
    csum: dict[int, str]
    base: Path | None = None


def _build_images(w: Path, base: Path) -> None:
    w.mkdir(parents=True)
    repo = Repo.init(w / "repo", mode=RepoMode.ARCHIVE)
    for v, ok in ((1, True), (2, False), (3, True)):
        tree = osimage.make_version(base, w / f"v{v}", v, healthy=ok)
        subprocess.run([sys.executable, "-m", "bootree", f"--repo={repo.path}", "commit", "-b", f"test/v{v}",
                        f"--tree=dir={tree}", f"--subject=v{v}", f"--add-metadata-string=version={v}"],
                       check=True, capture_output=True)
        shutil.rmtree(tree)
    repo.set_ref("test/stable", repo.resolve_rev("test/v1"))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory, os_base: Path) -> Images:
    """Built once per run and shared by both xdist workers: read-only (see :func:`_private`)."""
    from xdist_share import build_once

    w = build_once(tmp_path_factory, "osimages", lambda dest: _build_images(dest, os_base))
    repo = Repo.open(w / "repo")
    return Images(repo.path, {v: str(repo.resolve_rev(f"test/v{v}")) for v in (1, 2, 3)}, os_base)


def _private(images: Images, dest: Path) -> Images:
    """A copy of ``images`` that a test may commit into: its objects hard-linked, not copied.

    The shared repository is read by the other worker's boot tests at the same time. Objects are
    immutable (a commit adds new ones, by rename), so they are linked; everything else (refs,
    config, lock files) is copied, so that no lock or ref is shared with the original.
    """
    def link_objects(src: str, dst: str) -> None:
        if f"{os.sep}objects{os.sep}" in src:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(images.repo, dest, symlinks=True, copy_function=link_objects)
    return Images(dest, dict(images.csum), images.base)


def _entry_for(names: list[str], csum: str) -> str:
    found = [n for n in names if f"-{csum}." in n]
    assert len(found) == 1, (csum, names)
    return found[0]


def _set_stable(v: int) -> str:
    """A command for the test OS: move the origin ref to v (what a pull of an update does)."""
    return ("python3 -c \"from bootree.repo import Repo; r = Repo.open('/ostree/repo'); "
            f"r.set_ref('test/stable', r.resolve_rev('test/v{v}'))\"\n")


@pytest.mark.heavy(500)
def test_counting_fallback_and_recovery(images: Images, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    t0 = time.monotonic()
    res = install_to_disk(Repo.open(images.repo), "test/stable", disk, options=InstallOptions(
        kargs=KARGS, tries=TRIES, extra_refs=("test/v2", "test/v3")))
    timings = [f"install {time.monotonic() - t0:.1f}s"]
    v1, v2, v3 = images.csum[1], images.csum[2], images.csum[3]
    assert res.deployment.csum == v1
    assert entries(disk) == [res.esp_entries[0]] and res.esp_entries[0].endswith(f"+{TRIES}.conf")
    scratch = tmp_path / "scratch"

    def boot(n: int, cmd: str = "") -> Boot:
        set_cmd(disk, cmd, scratch)
        b = qemu_boot(disk, tmp_path / f"boot{n}.log")
        timings.append(f"boot{n} v{b.version} {b.seconds:.1f}s")
        return b

    # boot 1: v1 (counted) passes its checks and is blessed; an update (v2) is deployed inside the VM
    b = boot(1, _set_stable(2) + "bootree admin upgrade\n")
    assert b.version == 1 and b.health_rc == 0, b.log[-3000:]
    names = entries(disk)
    assert _entry_for(names, v1).endswith(f"{v1}.0.conf"), names  # blessed: no counter any more
    assert _entry_for(names, v2).endswith(f"+{TRIES}.conf"), names  # the new default, counted
    assert esp.loader_default(names) == _entry_for(names, v2)

    # boots 2..(TRIES+1): v2 fails its required check each time; the loader counts down
    for i in range(TRIES):
        b = boot(2 + i)
        assert b.version == 2 and b.health_rc == 3, b.log[-3000:]
        assert _entry_for(entries(disk), v2).endswith(f"+{TRIES - 1 - i}-{i + 1}.conf")

    # next boot: v2 is out of tries, the loader falls back to v1 by itself; v1 records it
    n = TRIES + 2
    b = boot(n, "echo STATUS-BEGIN\nbootree admin status --json\necho STATUS-END\n"
                "bootree admin upgrade\n"
                "bootree admin status\n" + _set_stable(3) + "bootree admin upgrade\n")
    assert b.version == 1 and b.health_rc == 0, b.log[-3000:]
    st = json.loads(b.between("STATUS-BEGIN", "STATUS-END"))
    by_csum = {d["checksum"]: d for d in st["deployments"]}
    assert by_csum[v1]["booted"] and st["deployments"][0]["checksum"] == v1  # the rollback is permanent
    assert by_csum[v2]["health"]["state"] == "failed"
    assert "50-service-answers" in by_csum[v2]["health"]["failedChecks"]
    assert by_csum[v2]["bootCounting"]["state"] == "bad"
    assert st["lastFallback"]["to"] == f"{v1}.0"
    assert f"Not deploying {v2}" in b.log  # upgrade does not queue the failed commit again
    assert "Automatic rollback:" in b.log and "FAILED" in b.log  # the human status says it too
    names = entries(disk)
    assert esp.loader_default(names) == _entry_for(names, v3)

    # v3: passes, is blessed, and stays the default on the next boot
    b = boot(n + 1)
    assert b.version == 3 and b.health_rc == 0, b.log[-3000:]
    assert f"marked good (bootree-4-default-{v3}.0.conf)" in b.log
    assert _entry_for(entries(disk), v3).endswith(f"{v3}.0.conf")
    # the next boot only reports what the loader picked (no health run needed to see the default)
    diskmod.esp_write(disk, esp_offset(disk), "/bootree-test/report-only", b"1\n", scratch=scratch)
    b = boot(n + 2)
    assert b.version == 3 and "report-only" in b.log
    print("timings:", ", ".join(timings))


def _esp_state(esp_dir: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    files = []
    for dirpath, _, fs in os.walk(esp_dir):
        for f in fs:
            files.append(str((Path(dirpath) / f).relative_to(esp_dir)))
    return tuple(esp.list_entries(esp_dir)), tuple(sorted(files))


@pytest.fixture
def two_deployments(images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path, Path]]:
    """A sysroot directory with v1 (blessed) then v2 deployed; the ESP before and after v2."""
    monkeypatch.setenv("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
    root, esp_dir = tmp_path / "root", tmp_path / "esp"
    sysroot, _ = prepare_sysroot(Repo.open(images.repo), "test/stable", root, esp_dir, options=InstallOptions(
        kargs=KARGS, tries=TRIES, extra_refs=("test/v2",)))
    first = esp.list_entries(esp_dir)[0]
    esp.bless(esp_dir, "\\loader\\entries\\" + first)
    before = tmp_path / "esp-before"
    shutil.copytree(esp_dir, before)
    monkeypatch.setenv("BOOTREE_ESP", str(esp_dir))
    with sysroot.lock():
        deploy(sysroot, sysroot.repo.resolve_rev("test/v2"), stateroot="default",
               origin=Origin.for_refspec("test/v2"), opts=DeployOptions())
    monkeypatch.delenv("BOOTREE_ESP")
    yield root, before, esp_dir


_SYNC = ("import sys; from bootree.sysroot import Sysroot, esp; s = Sysroot.open(sys.argv[1]); "
         "esp.sync_sysroot(s)")


@pytest.mark.heavy(250)
def test_power_cut_during_esp_update(images: Images, two_deployments: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, before, after = two_deployments
    v1, v2 = images.csum[1], images.csum[2]
    sysroot = Sysroot.open(root)
    n_ops = len(esp.plan_sync(before, esp.esp_deployments(sysroot, sysroot.deployments), tries=TRIES))
    assert n_ops >= 3
    states: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
    for k in range(n_ops + 1):
        cut = tmp_path / f"esp-cut{k}"
        shutil.copytree(before, cut)
        env = {**os.environ, "BOOTREE_ESP": str(cut), "BOOTREE_TEST_CRASH_AT": f"esp-op-{k}"}
        proc = subprocess.run([sys.executable, "-c", _SYNC, str(root)], env=env, capture_output=True, check=False)
        assert proc.returncode == (-9 if k < n_ops else 0), proc.stderr
        state = _esp_state(cut)
        states.setdefault(state, []).append(k)
        # the model: systemd-boot boots v1 (old default) or v2 (new), and its files are all there
        chosen = esp.loader_default(state[0])
        assert chosen is not None and (f"-{v1}." in chosen or f"-{v2}." in chosen), (k, state)
        text = (cut / "loader/entries" / chosen).read_text()
        for key in ("linux", "initrd"):
            path = re.search(rf"^{key} /(\S+)$", text, re.M)
            assert path and (cut / path.group(1)).is_file(), (k, key, state)
    assert _esp_state(tmp_path / f"esp-cut{n_ops}") == _esp_state(after)
    # boot each distinct ESP state for real (report-only: the init stops after printing what booted)
    root_img = tmp_path / "root.img"
    diskmod.make_root_image(root, root_img, size_mib=512)
    booted = []
    for state, ks in states.items():
        cut = tmp_path / f"esp-cut{ks[0]}"
        (cut / "bootree-test").mkdir(exist_ok=True)
        (cut / "bootree-test/report-only").write_text("1\n")
        diskmod.make_esp_image(cut, tmp_path / "esp.img", size_mib=128)
        disk = tmp_path / f"disk-cut{ks[0]}.img"
        diskmod.assemble_gpt(disk, tmp_path / "esp.img", root_img)
        b = qemu_boot(disk, tmp_path / f"cut{ks[0]}.log", snapshot=True)
        want = 2 if f"-{v2}." in (esp.loader_default(state[0]) or "") else 1
        assert b.version == want, (ks, state[0], b.log[-2000:])
        booted.append(f"cuts {ks}: v{b.version} ({b.seconds:.0f}s)")
        disk.unlink()
    print("power-cut boots:", "; ".join(booted))


@pytest.mark.heavy(150)
def test_composefs_root(images: Images, tmp_path: Path) -> None:
    """Issue 14: a deployment whose prepare-root.conf enables composefs boots on its .ostree.cfs.

    The initramfs checks the image's fs-verity digest (computed in busybox sh) against the
    commit's ``ostree.composefs.digest.v0`` and mounts it as EROFS under a read-only overlay over
    the repository's objects (data-only layer); inside, ``/`` is that overlay, ``/usr`` cannot be
    written, files read back through their objects and ``admin status`` shows the digest. (A
    refused image, with the boot counter's fallback: :func:`test_composefs_verity`.)
    """
    assert images.base is not None
    images = _private(images, tmp_path / "repo")
    tree = osimage.make_version(images.base, tmp_path / "v4", 4, healthy=True)
    conf = tree / "usr/lib/ostree/prepare-root.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("[composefs]\nenabled = yes\n")
    subprocess.run([sys.executable, "-m", "bootree", f"--repo={images.repo}", "commit", "-b", "test/cfs",
                    f"--tree=dir={tree}", "--subject=v4", "--add-metadata-string=version=4",
                    "--generate-composefs-metadata"], check=True, capture_output=True)
    repo = Repo.open(images.repo)
    csum = repo.resolve_rev("test/cfs")
    assert csum is not None
    from bootree.composefs import commit_digest

    digest = commit_digest(repo.read_commit(csum))
    assert digest is not None
    disk = tmp_path / "disk.img"
    install_to_disk(repo, "test/cfs", disk, options=InstallOptions(kargs=KARGS, tries=TRIES))
    set_cmd(disk, "grep ' / ' /proc/mounts\n"
                  "touch /usr/bootree-write-test 2>/dev/null && echo usr-writable || echo usr-ro\n"
                  "sha256sum /usr/lib/os-release\n"
                  "bootree admin status\n", tmp_path / "cmd.sh")
    boot = qemu_boot(disk, tmp_path / "boot.log")
    assert "bootree-initramfs: composefs=yes" in boot.log, boot.log[-3000:]
    assert f"bootree-initramfs: composefs digest {digest.hex()} matches the commit" in boot.log
    assert boot.version == 4, boot.log[-3000:]
    out = boot.between("BOOTREE-TEST: cmd begin", "BOOTREE-TEST: cmd end rc=0")
    assert "overlay / overlay ro" in out and "::/sysroot/ostree/repo/objects" in out, out
    assert "usr-ro" in out
    import hashlib

    assert hashlib.sha256((tree / "usr/lib/os-release").read_bytes()).hexdigest() in out
    assert f"composefs: {digest.hex()}" in out, out


@pytest.mark.timeout(3600)  # 5 boots, 2 of them deploying composefs images under emulation
@pytest.mark.heavy(600)
def test_composefs_verity(images: Images, tmp_path: Path) -> None:
    """Issue 14, item 3: composefs with fs-verity and ``enabled = signed``, booted for real.

    v1 is installed on an ext4 root made with ``-O verity`` (``[ex-fsverity] required=true``).
    Boot 1 (v1): a commit made inside the VM writes its object with fs-verity (the kernel's
    digest is the one computed here); v5 (signed by the initramfs's key) is deployed, and the
    deploy turns fs-verity on for its objects, copied in by the install without it; then its
    image is changed by one byte, and v6 (the same tree, signed by another key) is deployed on
    top. Boot 2: v6's initramfs refuses the signature and reboots; boot 3: v5's signature checks
    out, its image digest does not; boot 4: the loader falls back to v1 by itself, where v5 is
    deployed again (and ``admin post-copy`` gives the installed objects fs-verity). Boot 5: v5 on composefs with ``verity=require``: ``/usr`` cannot be written,
    the image records each object's kernel fs-verity digest, and an object replaced by a
    same-size file without fs-verity fails to read with EIO.
    """
    import cfsvm

    from bootree.format.fsverity import fsverity_digest

    assert images.base is not None
    images = _private(images, tmp_path / "repo")
    keys = tmp_path / "keys"
    keys.mkdir()
    trusted, other = cfsvm.keygen(keys / "trusted"), cfsvm.keygen(keys / "other")
    assert trusted != other
    tree = cfsvm.signed_tree(images.base, tmp_path / "v5", 5, trusted)
    cfsvm.commit_signed(images.repo, tree, "test/cfs5", "v5", keys / "trusted")
    cfsvm.commit_signed(images.repo, tree, "test/cfs6", "v6: the same tree, another key", keys / "other")
    shutil.rmtree(tree)
    repo = Repo.open(images.repo)
    v1, c5, c6 = images.csum[1], str(repo.resolve_rev("test/cfs5")), str(repo.resolve_rev("test/cfs6"))
    target = repo.reader.lookup(repo.read_commit(c5), cfsvm.TAMPER_TARGET)
    assert target is not None
    disk = tmp_path / "disk.img"
    t0 = time.monotonic()
    install_to_disk(repo, "test/stable", disk, options=InstallOptions(
        kargs=KARGS, tries=1, extra_refs=("test/cfs5", "test/cfs6"), fs_verity=True))
    timings = [f"install {time.monotonic() - t0:.1f}s"]

    def boot(n: int, cmd: str = "") -> Boot:
        set_cmd(disk, cmd, tmp_path / "scratch")
        # boots 1 and 4 deploy composefs images under emulation: minutes on a loaded machine
        b = qemu_boot(disk, tmp_path / f"boot{n}.log", timeout=max(bootbed.QEMU_TIMEOUT, 900))
        timings.append(f"boot{n} v{b.version} {b.seconds:.1f}s")
        return b

    b = boot(1, cfsvm.first_boot("test/cfs5", c5, "test/cfs6"))
    assert b.version == 1 and b.health_rc == 0, b.log[-3000:]
    out = b.between("BOOTREE-TEST: cmd begin", "BOOTREE-TEST: cmd end rc=0")
    assert "required=true" in out, out
    verity = cfsvm.verity_lines(out)
    assert verity["fresh"] == fsverity_digest(cfsvm.FRESH_CONTENT).hex(), out  # enabled by the transaction
    assert verity["installed"] == "none", out  # copied in by the install: no fs-verity yet
    assert verity["deployed"] != "none", out  # turned on by the deploy
    assert f"CFS-IMAGE-TAMPERED {c5}." in out and "CFS-DEPLOYED test/cfs6" in out, out

    b = boot(2)
    assert b.version is None, b.log[-3000:]
    assert f"bootree-initramfs: commit {c6} has no valid ed25519 signature" in b.log, b.log[-3000:]
    assert "refusing to enter" in b.log
    b = boot(3)
    assert b.version is None, b.log[-3000:]
    assert f"bootree-initramfs: commit {c5} signed by {trusted}" in b.log, b.log[-3000:]
    assert "bootree-initramfs: composefs image digest mismatch" in b.log, b.log[-3000:]
    names = entries(disk)  # both refused entries spent their try: the loader moves on to v1
    assert {n for n in names if n.endswith("+0-1.conf")} == {_entry_for(names, c6), _entry_for(names, c5)}, names

    os_release = "v1:test/stable:usr/lib/os-release"
    b = boot(4, cfsvm.measure(os_release) + "bootree admin post-copy\n" + cfsvm.measure(os_release)
             + "bootree admin deploy test/cfs5 >/dev/null && echo CFS-DEPLOYED again\n")
    assert b.version == 1 and b.health_rc == 0, b.log[-3000:]  # the fallback, by itself
    assert f"/{v1}.0" in b.log and "CFS-DEPLOYED again" in b.log, b.log[-3000:]
    # admin post-copy: fs-verity on what the install copied in (v1's os-release had none)
    entry = repo.reader.lookup(repo.read_commit(v1), "usr/lib/os-release")
    assert entry is not None
    with repo.open_file(entry.checksum) as obj:
        assert obj.stream is not None
        want = fsverity_digest(obj.stream.read()).hex()
    assert re.findall(r"^CFS-VERITY v1 (\S+)$", b.log, re.M) == ["none", want], b.log[-3000:]

    b = boot(5, cfsvm.composefs_boot("test/cfs5", target.checksum))
    assert b.version == 5 and b.health_rc == 0, b.log[-3000:]
    assert f"signed by {trusted}" in b.log and "composefs=signed root" in b.log, b.log[-3000:]
    out = b.between("BOOTREE-TEST: cmd begin", "BOOTREE-TEST: cmd end rc=0")
    assert re.search(r"overlay / overlay ro,.*verity=require", out), out
    assert "CFS-USR read-only" in out, out
    digest = cfsvm.verity_lines(out)["booted"]
    assert digest != "none" and re.search(rf"^CFS-DUMP .*{digest}", out, re.M), out  # metacopy has it
    assert f"CFS-SWAPPED size={len(cfsvm.TAMPER_CONTENT)}" in out, out
    assert re.search(r"CFS-TAMPER-READ rc=1 .*Input/output error", out), out
    print("timings:", ", ".join(timings))
